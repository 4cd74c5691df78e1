import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from trl_irl import occupancy_weights, span_positions, token_weights


def _labels(*rows):
    return torch.tensor(rows)


class TestSpanPositions:
    def test_one_completion_after_a_prompt(self):
        position, length = span_positions(_labels([-100, -100, 5, 6, 7, -100]))
        assert position.tolist() == [[0, 0, 0, 1, 2, 0]]
        assert length.tolist() == [[1, 1, 3, 3, 3, 1]]

    def test_two_assistant_turns_are_two_spans(self):
        position, length = span_positions(_labels([-100, 1, 2, -100, -100, 3, 4, 5, 6]))
        assert position.tolist() == [[0, 0, 1, 0, 0, 0, 1, 2, 3]]
        assert length.tolist() == [[1, 2, 2, 1, 1, 4, 4, 4, 4]]

    def test_a_sequence_start_splits_adjacent_trained_tokens(self):
        # Packed row: a 2-token sequence followed by a 3-token one, every token trained
        labels = _labels([1, 2, 3, 4, 5])
        position, length = span_positions(labels, position_ids=torch.tensor([[3, 4, 0, 1, 2]]))
        assert position.tolist() == [[0, 1, 0, 1, 2]]
        assert length.tolist() == [[2, 2, 3, 3, 3]]

    def test_rows_are_independent(self):
        position, length = span_positions(_labels([1, 2, -100], [-100, 3, 4]))
        assert position.tolist() == [[0, 1, 0], [0, 0, 1]]
        assert length.tolist() == [[2, 2, 1], [1, 2, 2]]

    def test_a_span_at_the_first_position_starts_there(self):
        # Nothing trained "before" position 0: a completion that starts the row is a span from its first token
        position, length = span_positions(torch.tensor([[5, 6, -100, 7]]))
        assert position.tolist() == [[0, 1, 0, 0]] and length.tolist() == [[2, 2, 1, 1]]

    def test_more_rows_than_positions(self):
        position, length = span_positions(torch.tensor([[-100, 5], [6, 7], [8, -100]]))
        assert position.tolist() == [[0, 0], [0, 1], [0, 0]] and length.tolist() == [[1, 1], [2, 2], [1, 1]]


class TestOccupancyWeights:
    def test_undiscounted_is_n_minus_t_over_n(self):
        weights = occupancy_weights(torch.tensor([0, 1, 2, 3]), torch.tensor([4, 4, 4, 4]))
        torch.testing.assert_close(weights, torch.tensor([1.0, 0.75, 0.5, 0.25]))

    def test_discounted_matches_hand_computation(self):
        # n = 3, gamma = 0.5: the sums are 1.75, 0.75 and 0.25, over 1.75
        weights = occupancy_weights(torch.tensor([0, 1, 2]), torch.tensor([3, 3, 3]), gamma=0.5)
        torch.testing.assert_close(weights, torch.tensor([1.0, 3 / 7, 1 / 7]))

    @pytest.mark.parametrize("gamma", [0.3, 0.9, 0.999999, 1.0])
    def test_closed_form_matches_the_sums(self, gamma):
        for n in range(1, 40):
            t = torch.arange(n)
            expected = torch.tensor(
                [sum(gamma**k for k in range(i, n)) / sum(gamma**k for k in range(n)) for i in range(n)],
                dtype=torch.float32,
            )
            torch.testing.assert_close(occupancy_weights(t, torch.full_like(t, n), gamma), expected)

    @pytest.mark.parametrize("gamma", [0.0, -0.5, 1.5, float("nan")])
    def test_rejects_gamma_outside_the_unit_interval(self, gamma):
        with pytest.raises(ValueError, match=r"`gamma` must be in \(0, 1\]"):
            occupancy_weights(torch.tensor([0]), torch.tensor([1]), gamma=gamma)


class TestTokenWeights:
    def test_occupancy_on_a_fixed_batch(self):
        weights = token_weights(_labels([-100, 5, 6, 7, -100], [-100, -100, 8, 9, 10]), token_weighting="occupancy")
        torch.testing.assert_close(
            weights, torch.tensor([[0.0, 1.0, 2 / 3, 1 / 3, 0.0], [0.0, 0.0, 1.0, 2 / 3, 1 / 3]])
        )

    def test_uniform_is_one_on_trained_tokens(self):
        weights = token_weights(_labels([-100, 5, 6, -100]), token_weighting="uniform")
        assert weights.tolist() == [[0.0, 1.0, 1.0, 0.0]]

    def test_packed_sequences_are_weighted_each_from_its_own_start(self):
        # Two sequences packed in one row, the second's completion right after the first's: the position ids say
        # where the second starts, without them the two completions would be one span
        labels = torch.tensor([[-100, 5, 6, 7, 8]])
        position_ids = torch.tensor([[1, 2, 3, 0, 1]])
        packed = token_weights(labels, position_ids)
        torch.testing.assert_close(packed, torch.tensor([[0.0, 1.0, 1 / 2, 1.0, 1 / 2]]), rtol=0, atol=1e-6)
        assert not torch.equal(token_weights(labels), packed)

    def test_rejects_unknown_weighting(self):
        with pytest.raises(ValueError, match="token_weighting"):
            token_weights(_labels([1]), token_weighting="linear")


class TestLayoutInvariance:
    """Padded, padding-free and packed batches of the same completions get the same per-completion weights."""

    examples = [
        {"input_ids": [11, 12, 13, 14, 15], "labels": [-100, -100, 13, 14, 15]},
        {"input_ids": [21, 22, 23], "labels": [-100, 22, 23]},
        {"input_ids": [31, 32, 33, 34, 35, 36, 37], "labels": [-100, -100, -100, 34, 35, 36, 37]},
        {"input_ids": [41, 42, 43, 44], "labels": [41, 42, 43, 44]},  # language modelling: every token trained
    ]

    @staticmethod
    def _weights_per_completion(batch) -> list[list[float]]:
        position_ids = batch.get("position_ids")
        weights = token_weights(batch["labels"][:, 1:], None if position_ids is None else position_ids[:, 1:])
        position, _ = span_positions(batch["labels"][:, 1:], None if position_ids is None else position_ids[:, 1:])
        # Row-major order over trained tokens: padded rows and padding-free segments come in the same order
        trained = batch["labels"][:, 1:] != -100
        completions = []
        for weight, pos in zip(weights[trained].tolist(), position[trained].tolist(), strict=True):
            if pos == 0:
                completions.append([])
            completions[-1].append(round(weight, 6))
        return completions

    def test_padded_padding_free_and_packed_agree(self):
        padded = DataCollatorForLanguageModeling(pad_token_id=0)(self.examples)
        padding_free = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(self.examples)
        packed_example = {
            "input_ids": sum((e["input_ids"] for e in self.examples), []),
            "labels": sum((e["labels"] for e in self.examples), []),
            "seq_lengths": [len(e["input_ids"]) for e in self.examples],
        }
        packed = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)([packed_example])

        three_tokens = [1.0, round(2 / 3, 6), round(1 / 3, 6)]
        expected = [three_tokens, [1.0, 0.5], [1.0, 0.75, 0.5, 0.25], three_tokens]
        assert self._weights_per_completion(padded) == expected
        assert self._weights_per_completion(padding_free) == expected
        assert self._weights_per_completion(packed) == expected


@given(length=st.integers(1, 200), gamma=st.floats(min_value=0.05, max_value=1.0))
def test_occupancy_weights_are_the_discounted_share_of_the_remaining_trajectory(length, gamma):
    positions = torch.arange(length)
    weights = occupancy_weights(positions, torch.full((length,), length), gamma).double()
    discounts = [gamma**k for k in range(length)]
    expected = torch.tensor([sum(discounts[t:]) / sum(discounts) for t in range(length)], dtype=torch.float64)
    assert torch.allclose(weights, expected, rtol=1e-5, atol=1e-6)
    assert weights[0] == pytest.approx(1.0, abs=1e-6)
    assert (weights[1:] <= weights[:-1] + 1e-7).all()
    # Positive, but for weights under float32's smallest (gamma^t < 1e-45), which round to 0
    assert (weights[expected > 1e-44] > 0).all() and (weights >= 0).all()


@given(
    spans=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    prompt_length=st.integers(0, 5),
    gamma=st.floats(min_value=0.1, max_value=1.0),
)
def test_token_weights_restart_at_every_trained_span(spans, prompt_length, gamma):
    # One row: an untrained prompt, then completion spans separated by one untrained token each
    labels, expected = [-100] * prompt_length, [0.0] * prompt_length
    for length in spans:
        labels += list(range(5, 5 + length)) + [-100]
        expected += occupancy_weights(torch.arange(length), torch.full((length,), length), gamma).tolist() + [0.0]
    weights = token_weights(torch.tensor([labels]), token_weighting="occupancy", gamma=gamma)
    assert torch.allclose(weights[0], torch.tensor(expected), atol=1e-6)
    uniform = token_weights(torch.tensor([labels]), token_weighting="uniform")
    assert torch.equal(uniform[0], (torch.tensor(labels) != -100).float())
