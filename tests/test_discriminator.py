import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import classifier_discriminator, counting_texts
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_irl import Discriminator
from trl_irl.discriminator import classification_statistics


def _model_inputs(discriminator, samples):
    return discriminator.scorer.model_inputs(
        samples, discriminator.tokenizer, discriminator.max_length, discriminator.device
    )


class TestDiscriminator:
    @pytest.mark.parametrize("backbone", ["tiny_model_path", "tiny_encoder_path"])
    def test_loss_falls_and_it_beats_chance_on_a_fixed_batch(self, backbone, request):
        discriminator = classifier_discriminator(request.getfixturevalue(backbone), learning_rate=3e-3)
        expert, policy = counting_texts()
        stats = [discriminator.update(expert, policy).stats for _ in range(40)]
        assert stats[-1]["loss"] < 0.8 * stats[0]["loss"]
        expert_logits, policy_logits = discriminator.logits(expert), discriminator.logits(policy)
        accuracy = ((expert_logits > 0).float().mean() + (policy_logits < 0).float().mean()) / 2
        assert accuracy > 0.75
        assert set(stats[0]) == {
            *("loss", "acc", "acc_expert", "acc_policy", "entropy", "logit_expert", "logit_policy", "grad_norm")
        }

    @pytest.mark.parametrize("backbone", ["tiny_model_path", "tiny_encoder_path"])
    def test_it_beats_chance_on_samples_it_never_trained_on(self, backbone, request):
        # Fresh batches of 16 from 256 training pairs, 8 passes: held-out accuracy 0.67 (decoder) and 0.64 (encoder)
        # on 128 + 128 samples, where chance has a standard deviation of 0.03. The 16 pairs of the test above, seen
        # 40 times, are memorised instead: 0.46 and 0.55 held out
        discriminator = classifier_discriminator(request.getfixturevalue(backbone), learning_rate=3e-3)
        for step in range(128):
            start = 16 * (step % 16)
            discriminator.update(*counting_texts(range(start, start + 16)))
        heldout_expert, heldout_policy = counting_texts(range(256, 384))
        stats = classification_statistics(discriminator.logits(heldout_expert), discriminator.logits(heldout_policy))
        assert stats["acc"] > 0.58, stats

    def test_statistics_are_those_of_the_batch(self, tiny_model_path):
        discriminator = classifier_discriminator(tiny_model_path)
        expert, policy = counting_texts()
        expert_logits, policy_logits = discriminator.logits(expert), discriminator.logits(policy)
        stats = discriminator.update(expert, policy).stats
        expected_loss = 0.5 * (
            F.binary_cross_entropy_with_logits(expert_logits, torch.ones_like(expert_logits))
            + F.binary_cross_entropy_with_logits(policy_logits, torch.zeros_like(policy_logits))
        )
        assert stats["loss"] == pytest.approx(expected_loss.item(), rel=1e-5)
        assert stats["acc_expert"] == pytest.approx((expert_logits > 0).float().mean().item())
        assert stats["acc_policy"] == pytest.approx((policy_logits < 0).float().mean().item())
        assert stats["logit_expert"] == pytest.approx(expert_logits.mean().item(), rel=1e-5)
        assert stats["logit_policy"] == pytest.approx(policy_logits.mean().item(), rel=1e-5)
        assert 0 < stats["entropy"] <= 0.6932

    def test_label_smoothing_moves_the_targets(self, tiny_model_path):
        discriminator = classifier_discriminator(tiny_model_path, label_smoothing=0.5)
        expert, policy = counting_texts()
        expert_logits, policy_logits = discriminator.logits(expert), discriminator.logits(policy)
        stats = discriminator.update(expert, policy).stats
        expected_loss = 0.5 * (
            F.binary_cross_entropy_with_logits(expert_logits, torch.full_like(expert_logits, 0.75))
            + F.binary_cross_entropy_with_logits(policy_logits, torch.full_like(policy_logits, 0.25))
        )
        assert stats["loss"] == pytest.approx(expected_loss.item(), rel=1e-5)

    def test_gradient_penalty_adds_to_the_loss(self, tiny_model_path):
        expert, policy = counting_texts()
        plain = classifier_discriminator(tiny_model_path).update(expert, policy).stats
        penalised = classifier_discriminator(tiny_model_path, gradient_penalty=10.0).update(expert, policy).stats
        assert penalised["gradient_penalty"] > 0
        assert penalised["loss"] == pytest.approx(plain["loss"] + 10.0 * penalised["gradient_penalty"], rel=1e-4)

    def test_gradient_penalty_shrinks_input_gradients(self, tiny_model_path):
        expert, policy = counting_texts()
        plain = classifier_discriminator(tiny_model_path, learning_rate=3e-3, gradient_penalty=0.0)
        penalised = classifier_discriminator(tiny_model_path, learning_rate=3e-3, gradient_penalty=10.0)
        for _ in range(15):
            plain.update(expert, policy)
            last = penalised.update(expert, policy).stats
        penalty_of_plain = classifier_discriminator(tiny_model_path, gradient_penalty=1.0)
        penalty_of_plain.model.load_state_dict(plain.model.state_dict())
        assert last["gradient_penalty"] < penalty_of_plain.update(expert, policy).stats["gradient_penalty"]

    def test_replay_buffer_keeps_the_latest_policy_samples(self, tiny_model_path):
        discriminator = classifier_discriminator(tiny_model_path, replay_buffer_size=5)
        expert, policy = counting_texts()
        discriminator.update(expert, policy[:4])
        assert discriminator.replay_buffer.samples == policy[:4]
        discriminator.update(expert, policy[4:8])
        assert discriminator.replay_buffer.samples == policy[3:8]

    def test_replayed_samples_join_the_update(self, tiny_model_path, monkeypatch):
        discriminator = classifier_discriminator(tiny_model_path, replay_buffer_size=8)
        expert, policy = counting_texts()
        discriminator.update(expert, policy[:4])
        seen = []
        forward = discriminator.model_logits
        monkeypatch.setattr(
            discriminator, "model_logits", lambda texts, **kw: seen.append(texts) or forward(texts, **kw)
        )
        discriminator.update(expert, policy[4:6])
        policy_batch = seen[1]
        assert policy_batch[:2] == policy[4:6]
        assert len(policy_batch) == 4 and set(policy_batch[2:]) <= set(policy[:4])

    def test_rejects_a_tokenizer_without_padding_token(self, tiny_model_path):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        tokenizer.pad_token = None
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
        with pytest.raises(ValueError, match="padding token"):
            Discriminator(model, tokenizer)

    def test_rejects_more_than_one_label(self, tiny_model_path):
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=2)
        with pytest.raises(ValueError, match="num_labels"):
            Discriminator(model, AutoTokenizer.from_pretrained(tiny_model_path))

    def test_long_texts_keep_their_end(self, tiny_model_path):
        discriminator = classifier_discriminator(tiny_model_path, max_length=8)
        batch, _ = _model_inputs(discriminator, ["a b c d e f g h i j k l m n o p q r s t u v w x y z"])
        assert batch["input_ids"].shape[1] == 8
        assert discriminator.tokenizer.decode(batch["input_ids"][0]).endswith("z")

    def test_save_and_load_round_trip(self, tmp_path, tiny_model_path):
        expert, policy = counting_texts()
        trained = classifier_discriminator(tiny_model_path, learning_rate=3e-3, replay_buffer_size=4)
        for _ in range(3):
            trained.update(expert, policy)
        trained.save_pretrained(tmp_path)
        trained.save_state(tmp_path)

        # A standalone transformers model scores exactly as the discriminator did
        reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
        tokenizer = AutoTokenizer.from_pretrained(tmp_path)
        with torch.no_grad():
            logits = reloaded(**tokenizer(expert[:3], padding=True, return_tensors="pt")).logits[:, 0]
        torch.testing.assert_close(logits, trained.logits(expert[:3]))

        # A fresh discriminator resumes the same training
        resumed = classifier_discriminator(tiny_model_path, learning_rate=3e-3, replay_buffer_size=4)
        resumed.load(tmp_path)
        assert resumed.replay_buffer.samples == trained.replay_buffer.samples
        continued = copy.deepcopy(trained)
        torch.testing.assert_close(
            resumed.update(expert, policy).stats["loss"], continued.update(expert, policy).stats["loss"]
        )
        for a, b in zip(resumed.model.parameters(), continued.model.parameters(), strict=True):
            torch.testing.assert_close(a, b)

    def test_a_resume_keeps_the_optimizer_s_moments_and_takes_the_new_learning_rate(
        self, tmp_path, tiny_model_path, caplog
    ):
        # The saturation warning's advice, a lower `disc_learning_rate` and a resume, must be what happens
        expert, policy = counting_texts()
        trained = classifier_discriminator(tiny_model_path, learning_rate=3e-3)
        trained.update(expert, policy)
        trained.save_pretrained(tmp_path)
        trained.save_state(tmp_path)
        resumed = classifier_discriminator(tiny_model_path, learning_rate=1e-4)
        with caplog.at_level("WARNING"):
            resumed.load(tmp_path)
        assert [group["lr"] for group in resumed.optimizer.param_groups] == [1e-4] * len(
            trained.optimizer.param_groups
        )
        assert "learning rate 0.0001 of this run's settings" in caplog.text and "written at 0.003" in caplog.text
        saved = trained.optimizer.state_dict()["state"]
        for index, state in resumed.optimizer.state_dict()["state"].items():
            torch.testing.assert_close(state["exp_avg"], saved[index]["exp_avg"])

    def test_each_process_resumes_its_own_replay_buffer_and_random_state(self, tmp_path, tiny_model_path):
        expert, policy = counting_texts()
        process_0 = classifier_discriminator(tiny_model_path, learning_rate=3e-3, replay_buffer_size=4)
        process_1 = copy.deepcopy(process_0)
        process_0.update(expert, policy[:2])
        process_1.update(expert, policy[2:4])
        process_1.replay_buffer._rng.random()
        process_0.save_pretrained(tmp_path)
        process_0.save_state(tmp_path, process_index=0)
        process_1.save_state(tmp_path, process_index=1)

        resumed = [classifier_discriminator(tiny_model_path, replay_buffer_size=4) for _ in range(2)]
        for index, discriminator in enumerate(resumed):
            discriminator.load(tmp_path, process_index=index)
        assert resumed[0].replay_buffer.samples == policy[:2] and resumed[1].replay_buffer.samples == policy[2:4]
        assert (
            resumed[1].replay_buffer._rng.getstate()
            == process_1.replay_buffer._rng.getstate()
            != process_0.replay_buffer._rng.getstate()
        )
        assert resumed[0].replay_buffer._rng.getstate() == process_0.replay_buffer._rng.getstate()
        # Resuming with more processes than wrote the checkpoint is refused, naming the missing file
        with pytest.raises(FileNotFoundError, match="discriminator_state_process2.pt.*as many processes"):
            classifier_discriminator(tiny_model_path, replay_buffer_size=4).load(tmp_path, process_index=2)


class TestTokenDiscriminatorWindow:
    def _token_discriminator(self, path, max_length):
        from transformers import AutoModelForTokenClassification

        from trl_irl.discriminator import TokenDiscriminator

        model = AutoModelForTokenClassification.from_pretrained(path, num_labels=1)
        return TokenDiscriminator(model, AutoTokenizer.from_pretrained(path), max_length=max_length)

    def test_a_long_prompt_loses_its_first_tokens_and_every_response_token_is_scored(self, tiny_model_path):
        discriminator = self._token_discriminator(tiny_model_path, max_length=6)
        samples = [((11, 12, 13, 14, 15), (21, 22, 23)), ((31,), (41, 42))]
        batch, positions = _model_inputs(discriminator, samples)
        # 5 + 3 tokens in a window of 6: the prompt's first 2 go, the response stays whole
        assert batch["input_ids"][0].tolist() == [13, 14, 15, 21, 22, 23]
        assert batch["input_ids"][1, :3].tolist() == [31, 41, 42]
        assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
        assert positions.tolist() == [
            [False, False, False, True, True, True],
            [False, True, True, False, False, False],
        ]
        # One logit per response token, in order: the classifier's outputs at the response positions
        with torch.no_grad():
            outputs = discriminator.model(**batch).logits[..., 0]
        torch.testing.assert_close(discriminator.logits(samples), outputs[positions])
        assert discriminator.logits(samples).shape == (5,)

    def test_a_response_longer_than_the_window_is_refused(self, tiny_model_path):
        discriminator = self._token_discriminator(tiny_model_path, max_length=4)
        with pytest.raises(ValueError, match="does not fit the discriminator's window"):
            discriminator.logits([((1, 2), (3, 4, 5, 6, 7))])


@pytest.mark.parametrize("kind", ["classifier", "likelihood_ratio"])
def test_micro_batches_take_the_same_step_as_the_whole_batch(tiny_model_path, kind):
    from transformers import AutoModelForCausalLM

    from trl_irl import LikelihoodRatioDiscriminator

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    if kind == "classifier":
        expert, policy = counting_texts()
        offsets = None
    else:
        expert_texts, policy_texts = counting_texts()
        expert = [((1, 5, 7), tuple(tokenizer(t, add_special_tokens=False)["input_ids"][-6:])) for t in expert_texts]
        policy = [((1, 5, 7), tuple(tokenizer(t, add_special_tokens=False)["input_ids"][-5:])) for t in policy_texts]
        offsets = torch.linspace(-1, 1, len(expert)), torch.linspace(1, -1, len(policy))

    def build(micro_batch_size):
        torch.manual_seed(0)
        settings = {"learning_rate": 1e-3, "gradient_penalty": 0.1, "micro_batch_size": micro_batch_size}
        if kind == "classifier":
            model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
            return Discriminator(model, tokenizer, label_smoothing=0.2, **settings)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        return LikelihoodRatioDiscriminator(model, tokenizer, **settings)

    whole, micro = build(None), build(5)  # 16 samples per class: micro-batches of 5, 5, 5 and 1
    kwargs = {} if offsets is None else {"expert_logit_offsets": offsets[0], "policy_logit_offsets": offsets[1]}
    whole_update, micro_update = whole.update(expert, policy, **kwargs), micro.update(expert, policy, **kwargs)
    (whole_stats, whole_logits), (micro_stats, micro_logits) = (
        (update.stats, update.policy_logits) for update in (whole_update, micro_update)
    )
    torch.testing.assert_close(micro_logits, whole_logits, rtol=1e-4, atol=1e-5)
    assert micro_stats == pytest.approx(whole_stats, rel=1e-4, abs=1e-5)
    for a, b in zip(whole.model.parameters(), micro.model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    assert not torch.equal(next(whole.model.parameters()), next(build(None).model.parameters()))  # it stepped
