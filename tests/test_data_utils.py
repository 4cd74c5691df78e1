"""`trl_irl/data_utils.py`: demonstrations made from SFT datasets, their checks, and the pool of demonstrations."""

import pytest
from datasets import Dataset, IterableDataset
from hypothesis import given, settings
from hypothesis import strategies as st

from trl_irl.data_utils import DemonstrationPool, one_row_per_assistant_turn, prepare_demonstrations


class TestPrepareDemonstrations:
    def test_prompt_completion_becomes_prompt_and_demonstration(self, prompt_completion_dataset):
        prepared = prepare_demonstrations(prompt_completion_dataset)
        assert prepared.column_names == ["prompt", "demonstration"]
        assert prepared[0]["demonstration"] == prompt_completion_dataset[0]["completion"]

    def test_messages_split_at_the_last_assistant_turn(self, conversational_dataset):
        prepared = prepare_demonstrations(conversational_dataset)
        messages = conversational_dataset[0]["messages"]
        assert prepared[0]["prompt"] == messages[:3]
        assert prepared[0]["demonstration"] == [messages[3]]

    def test_prompts_may_hold_tool_calls(self):
        # An assistant turn that only calls a tool has no content, which chat templates render; the demonstration
        # itself must be text
        messages = [
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "add"}}]},
            {"role": "tool", "content": "4"},
            {"role": "assistant", "content": "It is 4."},
        ]
        prepared = prepare_demonstrations(Dataset.from_list([{"messages": messages}]))
        assert prepared[0]["demonstration"][0]["content"] == "It is 4."

    def test_a_text_prompt_with_a_chat_completion_is_refused(self):
        # Arrow cannot hold both in one column; a text prompt column beside a chat completion column it can
        dataset = Dataset.from_list([{"prompt": "Say hi:", "completion": [{"role": "assistant", "content": "hi"}]}])
        with pytest.raises(ValueError, match="Row 0 .* prompt of text and a demonstration of chat messages"):
            prepare_demonstrations(dataset)

    def test_an_iterable_dataset_without_features_is_read_from_its_first_row(self, prompt_completion_dataset):
        rows = prompt_completion_dataset.to_list()[:3]
        dataset = IterableDataset.from_generator(lambda: iter(rows))
        assert dataset.column_names is None
        prepared = list(prepare_demonstrations(dataset))
        assert [row["demonstration"] for row in prepared] == [row["completion"] for row in rows]

    def test_an_iterable_dataset_is_checked_as_it_is_read(self):
        rows = [{"prompt": "Say hi:", "completion": "hi"}, {"prompt": "Say bye:", "completion": " "}]
        prepared = prepare_demonstrations(IterableDataset.from_generator(lambda: iter(rows)))
        with pytest.raises(ValueError, match="Row 1 .* empty demonstration"):
            list(prepared)

    @pytest.mark.parametrize(
        ("rows", "message"),
        [
            ([], "empty"),
            ([{"text": "hello"}], "text"),
            ([{"prompt": "Say hi:", "completion": "  "}], "Row 0 .* empty demonstration"),
            ([{"messages": [{"role": "user", "content": "hi"}]}], "Row 0 .* no assistant turn"),
            (
                [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}] * 2
                + [
                    {
                        "messages": [
                            {"role": "user", "content": "hi"},
                            {"role": "assistant", "content": "hello"},
                            {"role": "user", "content": "bye"},
                        ]
                    }
                ],
                r"Row 2 .* 1 turn\(s\) after its last assistant turn \(roles \['user'\]\)",
            ),
            (
                [{"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "hello"}]}],
                "Row 0 .* needs a string `role` and a `content`",
            ),
            (
                [
                    {
                        "prompt": [{"role": "user", "content": "hi"}],
                        "completion": [{"role": "assistant", "content": None}],
                    }
                ],
                "Row 0 .* needs a string `role` and a string `content`",
            ),
            ([{"prompt": None, "completion": "hello"}], "Row 0 .* prompt must be text or a list"),
        ],
    )
    def test_bad_datasets_fail_naming_the_problem(self, rows, message):
        dataset = Dataset.from_list(rows) if rows else Dataset.from_dict({"prompt": [], "completion": []})
        with pytest.raises(ValueError, match=message):
            prepare_demonstrations(dataset)


class TestDemonstrationPool:
    def test_split_is_disjoint_and_draws_are_keyed(self):
        dataset = Dataset.from_list([{"prompt": f"p{i}", "demonstration": f" d{i}"} for i in range(20)])
        pool = DemonstrationPool(dataset, heldout_fraction=0.25, seed=3)
        assert len(pool.heldout_rows) == 5 and len(pool.training_rows) == 15
        assert not set(pool.heldout_rows) & set(pool.training_rows)

        prompts, demonstrations = pool.sample(6, key=(0, 1, 0))
        assert len(set(prompts)) == 6  # without replacement
        assert all(d == " d" + p[1:] for p, d in zip(prompts, demonstrations, strict=True))
        assert {int(prompt[1:]) for prompt in prompts} <= set(pool.training_rows)
        assert pool.sample(6, key=(0, 1, 0)) == (prompts, demonstrations)
        assert pool.sample(6, key=(1, 1, 0)) != (prompts, demonstrations)  # another process draws others
        heldout_prompts, _ = pool.sample(5, key=(0, 1, 0), heldout=True)
        assert {int(prompt[1:]) for prompt in heldout_prompts} == set(pool.heldout_rows)
        assert len(pool.sample(40, key=(0, 2, 0))[0]) == 40  # more than there are: drawn with replacement

    def test_keeps_a_training_row(self):
        pool = DemonstrationPool(Dataset.from_list([{"prompt": "p", "demonstration": " d"}] * 2), 0.9)
        assert len(pool.training_rows) == 1


def test_every_assistant_turn_becomes_a_demonstration_with_the_conversation_before_it():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Green."},
    ]
    conversations = Dataset.from_list(
        [{"messages": messages, "source": "a"}, {"messages": messages[:3], "source": "b"}]
    )
    rows = one_row_per_assistant_turn(conversations)
    assert rows["prompt"] == [messages[:2], messages[:4], messages[:2]]
    assert rows["completion"] == [[messages[2]], [messages[4]], [messages[2]]]
    assert rows["source"] == ["a", "a", "b"]
    # What the trainers take: each row's one assistant turn is its demonstration
    prepared = prepare_demonstrations(rows)
    assert prepared["demonstration"] == rows["completion"]


@settings(max_examples=30, deadline=None)  # each example maps a Dataset
@given(turns=st.lists(st.sampled_from(["user", "assistant"]), min_size=1, max_size=8))
def test_splitting_gives_one_row_per_assistant_turn(turns):
    messages = [{"role": role, "content": f"turn {i}"} for i, role in enumerate(turns)]
    if "assistant" not in turns:
        with pytest.raises(ValueError, match="Row 0 of `conversations` has no assistant turn"):
            one_row_per_assistant_turn(Dataset.from_list([{"messages": messages}]), "conversations")
        return
    rows = one_row_per_assistant_turn(Dataset.from_list([{"messages": messages}]))
    assert len(rows) == turns.count("assistant")
    for prompt, (completion,) in zip(rows["prompt"], rows["completion"], strict=True):
        assert completion["role"] == "assistant" and messages[len(prompt)] == completion


def test_splitting_turns_needs_messages():
    with pytest.raises(ValueError, match="`train` has columns \\['prompt', 'completion'\\]"):
        one_row_per_assistant_turn(Dataset.from_list([{"prompt": "a", "completion": "b"}]), "train")


def test_splitting_turns_reads_an_iterable_dataset_without_declared_columns():
    def conversations():
        yield {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}

    rows = list(one_row_per_assistant_turn(IterableDataset.from_generator(conversations)))
    assert rows == [
        {"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": "b"}]}
    ]
