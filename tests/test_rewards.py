import pytest
import torch
from datasets import Dataset
from helpers import logged_warnings
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_irl import Discriminator, DiscriminatorReward, policy_reward
from trl_irl.data_utils import DemonstrationPool


PROMPTS = ["Count from 1 by 1, 3 numbers:", "Count from 5 by 2, 3 numbers:"]
COMPLETIONS = [" 1 3 2", " 5 9 7"]
DEMONSTRATIONS = [" 1 2 3", " 5 7 9"]


def _text_samples(prompts, responses, completion_ids=None):
    return [prompt + response for prompt, response in zip(prompts, responses, strict=True)]


@pytest.fixture
def discriminator(tiny_model_path):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    return Discriminator(model, AutoTokenizer.from_pretrained(tiny_model_path), learning_rate=1e-2)


def _parameters(discriminator):
    return [param.detach().clone() for param in discriminator.model.parameters()]


class TestDiscriminatorReward:
    @pytest.mark.parametrize("divergence", ["js", "reverse_kl", "forward_kl", "alpha"])
    def test_scores_before_the_update_by_default(self, discriminator, divergence):
        reward = DiscriminatorReward(discriminator, _text_samples, divergence=divergence)
        logits_before = discriminator.logits(_text_samples(PROMPTS, COMPLETIONS))
        before = _parameters(discriminator)
        rewards = reward(PROMPTS, COMPLETIONS, demonstration=DEMONSTRATIONS)
        torch.testing.assert_close(torch.tensor(rewards), policy_reward(logits_before, divergence))
        assert any(not torch.equal(a, b) for a, b in zip(before, _parameters(discriminator), strict=True))

    def test_scores_after_the_update_when_asked(self, discriminator):
        reward = DiscriminatorReward(discriminator, _text_samples, divergence="reverse_kl", scoring="after_update")
        rewards = reward(PROMPTS, COMPLETIONS, demonstration=DEMONSTRATIONS)
        torch.testing.assert_close(torch.tensor(rewards), discriminator.logits(_text_samples(PROMPTS, COMPLETIONS)))

    def test_updates_per_generation(self, discriminator, monkeypatch):
        calls = []
        update = discriminator.update
        monkeypatch.setattr(discriminator, "update", lambda e, p, **kw: calls.append((e, p)) or update(e, p, **kw))
        DiscriminatorReward(discriminator, _text_samples, updates_per_generation=3, completions_per_prompt=2)(
            [p for p in PROMPTS for _ in range(2)],
            COMPLETIONS * 2,
            demonstration=[d for d in DEMONSTRATIONS for _ in range(2)],
        )
        assert len(calls) == 3
        # Repeated prompts (one per generation) give each demonstration once
        assert calls[0][0] == _text_samples(PROMPTS, DEMONSTRATIONS)

    @pytest.mark.parametrize(("copies", "expected"), [(4, 2), (3, 2), (2, 1), (1, 1)])
    def test_identical_dataset_rows_each_keep_their_demonstration(self, discriminator, monkeypatch, copies, expected):
        # Two identical rows of the dataset, each generated for twice, give 4 copies: 2 demonstrations, not 1. A group
        # cut between two processes leaves fewer copies on each: still one row each
        calls = []
        update = discriminator.update
        monkeypatch.setattr(discriminator, "update", lambda e, p, **kw: calls.append(e) or update(e, p, **kw))
        DiscriminatorReward(discriminator, _text_samples, completions_per_prompt=2)(
            PROMPTS[:1] * copies, COMPLETIONS[:1] * copies, demonstration=DEMONSTRATIONS[:1] * copies
        )
        assert calls[0] == _text_samples(PROMPTS[:1], DEMONSTRATIONS[:1]) * expected

    def test_reward_clip(self, discriminator):
        reward = DiscriminatorReward(discriminator, _text_samples, divergence="reverse_kl", reward_clip=1e-4)
        rewards = torch.tensor(reward(PROMPTS, COMPLETIONS, demonstration=DEMONSTRATIONS))
        assert rewards.abs().max() <= 1e-4

    def test_warmup_generations_give_zero_rewards(self, discriminator):
        reward = DiscriminatorReward(discriminator, _text_samples, warmup_generations=2)
        for _ in range(2):
            assert reward(PROMPTS, COMPLETIONS, demonstration=DEMONSTRATIONS) == [0.0, 0.0]
        assert all(r != 0.0 for r in reward(PROMPTS, COMPLETIONS, demonstration=DEMONSTRATIONS))

    def test_does_not_learn_outside_training(self, discriminator):
        reward = DiscriminatorReward(discriminator, _text_samples, is_training=lambda: False, warmup_generations=5)
        before = _parameters(discriminator)
        rewards = reward(PROMPTS, COMPLETIONS, demonstration=DEMONSTRATIONS)
        assert all(torch.equal(a, b) for a, b in zip(before, _parameters(discriminator), strict=True))
        assert rewards != [0.0, 0.0]  # warm-up counts training generations only
        assert reward.num_generations_seen == 0

    def test_logs_discriminator_statistics(self, discriminator):
        logged = {}
        DiscriminatorReward(discriminator, _text_samples)(
            PROMPTS, COMPLETIONS, demonstration=DEMONSTRATIONS, log_metric=logged.__setitem__
        )
        assert {"disc/loss", "disc/acc", "disc/acc_expert", "disc/acc_policy", "disc/entropy"} <= set(logged)

    def test_statistics_are_averaged_over_a_batchs_updates(self, discriminator, monkeypatch):
        update = discriminator.update
        seen = []

        def recorded_update(*args, **kwargs):
            result = update(*args, **kwargs)
            seen.append(dict(result.stats))
            return result

        monkeypatch.setattr(discriminator, "update", recorded_update)
        logged = {}
        DiscriminatorReward(discriminator, _text_samples, updates_per_generation=3)(
            PROMPTS, COMPLETIONS, demonstration=DEMONSTRATIONS, log_metric=logged.__setitem__
        )
        assert len(seen) == 3 and len({stats["loss"] for stats in seen}) == 3  # each update learned something
        for name in ("loss", "acc", "entropy"):
            assert logged[f"disc/{name}"] == pytest.approx(sum(stats[name] for stats in seen) / 3)

    def test_needs_the_demonstration_column(self, discriminator):
        with pytest.raises(KeyError, match="demonstration"):
            DiscriminatorReward(discriminator, _text_samples)(PROMPTS, COMPLETIONS, solution=DEMONSTRATIONS)


class TestSaturationAndNonFiniteLogits:
    def _saturated(self, discriminator, monkeypatch, logit: float):
        monkeypatch.setattr(discriminator, "logits", lambda samples, offsets=None: torch.full((len(samples),), logit))

    @pytest.mark.parametrize(("divergence", "saturated"), [("js", 1.0), ("forward_kl", 1.0), ("reverse_kl", 0.0)])
    def test_a_saturated_discriminator_is_logged_and_warned_about_once(
        self, discriminator, monkeypatch, caplog, divergence, saturated
    ):
        warnings = logged_warnings(caplog, "trl_irl.rewards")
        self._saturated(discriminator, monkeypatch, -30.0)
        reward = DiscriminatorReward(discriminator, _text_samples, divergence=divergence, updates_per_generation=0)
        for _ in range(2):
            logged = {}
            reward(PROMPTS, COMPLETIONS, demonstration=DEMONSTRATIONS, log_metric=logged.__setitem__)
            assert logged["disc/saturated_fraction"] == saturated
        assert len(warnings) == (1 if saturated else 0)
        if saturated:
            assert "saturated" in warnings[0] and "disc_learning_rate" in warnings[0]

    def test_clipped_rewards_count_as_saturated(self, discriminator, monkeypatch):
        self._saturated(discriminator, monkeypatch, 5.0)
        reward = DiscriminatorReward(
            discriminator, _text_samples, divergence="reverse_kl", reward_clip=1.0, updates_per_generation=0
        )
        logged = {}
        reward(PROMPTS, COMPLETIONS, demonstration=DEMONSTRATIONS, log_metric=logged.__setitem__)
        assert logged["disc/saturated_fraction"] == 1.0

    def test_non_finite_logits_stop_training_with_the_likely_causes(self, discriminator, monkeypatch):
        self._saturated(discriminator, monkeypatch, float("nan"))
        reward = DiscriminatorReward(discriminator, _text_samples, updates_per_generation=0)
        with pytest.raises(FloatingPointError, match="not finite.*disc_learning_rate"):
            reward(PROMPTS, COMPLETIONS, demonstration=DEMONSTRATIONS)

    def test_a_non_finite_loss_skips_the_step(self, discriminator):
        before = _parameters(discriminator)
        expert, policy = _text_samples(PROMPTS, DEMONSTRATIONS), _text_samples(PROMPTS, COMPLETIONS)
        with pytest.raises(FloatingPointError, match="step was skipped"):
            discriminator.update(expert, policy, expert_logit_offsets=torch.tensor([float("nan"), 0.0]))
        assert all(torch.equal(a, b) for a, b in zip(before, _parameters(discriminator), strict=True))


def test_reward_draws_expert_batches_from_the_pool_and_logs_heldout_statistics(tiny_model_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    from trl_irl import Discriminator

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    discriminator = Discriminator(model, AutoTokenizer.from_pretrained(tiny_model_path))
    dataset = Dataset.from_list([{"prompt": f"Say {i}:", "demonstration": f" {i}"} for i in range(40)])
    pool = DemonstrationPool(dataset, heldout_fraction=0.25)
    expert_batches = []
    update = discriminator.update
    monkeypatch.setattr(discriminator, "update", lambda e, p, **kw: expert_batches.append(e) or update(e, p, **kw))
    logged, observed = {}, []

    def sample_encoder(prompts, responses, completion_ids=None):
        return [prompt + response for prompt, response in zip(prompts, responses, strict=True)]

    reward = DiscriminatorReward(
        discriminator,
        sample_encoder,
        updates_per_generation=2,
        demonstration_pool=pool,
        on_scored=lambda *args: observed.append(args),
    )
    rewards = reward(["Say 1:"] * 3, [" 7", " 8", " 9"], log_metric=logged.__setitem__)

    assert len(expert_batches) == 2 and all(len(batch) == 3 for batch in expert_batches)
    assert expert_batches[0] != expert_batches[1]  # each update draws anew
    training_texts = {f"Say {i}: {i}" for i in pool.training_rows}
    assert all(set(batch) <= training_texts for batch in expert_batches)
    assert {"disc/heldout_loss", "disc/heldout_acc", "disc/heldout_acc_expert", "disc/heldout_acc_policy"} <= set(
        logged
    )
    (prompts, completions, _, observed_rewards, stats) = observed[0]
    assert observed_rewards == rewards and stats["heldout_acc"] == logged["disc/heldout_acc"]


def test_likelihood_reward_loads_its_tokenizer_at_the_model_s_revision(tiny_model_path, monkeypatch):
    import transformers

    from trl_irl import LikelihoodReward

    original = transformers.AutoTokenizer.from_pretrained
    received = {}

    def recording(path, **kwargs):
        received.update(kwargs)
        return original(path, **kwargs)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", recording)
    LikelihoodReward.from_pretrained(tiny_model_path, revision="main", trust_remote_code=False)
    assert received == {"revision": "main", "trust_remote_code": False}


def test_likelihood_reward_refuses_a_directory_of_another_kind_of_model(tiny_model_path, tmp_path):
    from trl_irl import LikelihoodReward

    # A `RewardTrainer` model: as a causal LM it would load with a new, random head and score noise
    classifier = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    classifier.save_pretrained(tmp_path / "reward")
    AutoTokenizer.from_pretrained(tiny_model_path).save_pretrained(tmp_path / "reward")
    with pytest.raises(ValueError, match=r"reward' holds a LlamaForSequenceClassification, not a causal language"):
        LikelihoodReward.from_pretrained(tmp_path / "reward")
    assert LikelihoodReward.from_pretrained(tiny_model_path).model.training is False  # a causal LM loads


@pytest.mark.parametrize("subfolder", ["reward_model", "discriminator"])
def test_likelihood_reward_warns_when_given_a_run_s_top_folder(tiny_model_path, tmp_path, caplog, subfolder):
    import shutil

    from trl_irl import LikelihoodReward

    # An AIRL (or GAIL) output directory: the policy at the top, the learned model in a subfolder
    shutil.copytree(tiny_model_path, tmp_path / "run")
    shutil.copytree(tiny_model_path, tmp_path / "run" / subfolder)
    with caplog.at_level("WARNING", logger="trl_irl.likelihood_rewards"):
        LikelihoodReward.from_pretrained(tmp_path / "run")
    assert f"in {str(tmp_path / 'run' / subfolder)!r}" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="trl_irl.likelihood_rewards"):
        LikelihoodReward.from_pretrained(tmp_path / "run" / subfolder)
    assert "output directory of a run" not in caplog.text


def test_likelihood_reward_refuses_completion_ids_of_another_vocabulary(tiny_model_path):
    from transformers import AutoModelForCausalLM

    from trl_irl import LikelihoodReward
    from trl_irl.benchmark.tiny_models import build_tiny_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    # Another model family's tokenizer: the same texts, other ids (its merges of these words are ids the policy's
    # tokenizer gives to other pieces)
    other = build_tiny_tokenizer(["the quick brown fox jumps over the lazy dog"] * 4, vocab_size=300)
    completions = [" the quick brown fox", " the lazy dog"]
    prompts = ["Count from 1 by 1, 3 numbers:", "Count from 5 by 2, 2 numbers:"]

    def ids_of(tokenizer_):
        return [tokenizer_(c, add_special_tokens=False)["input_ids"] + [tokenizer_.eos_token_id] for c in completions]

    reward = LikelihoodReward(AutoModelForCausalLM.from_pretrained(tiny_model_path), tokenizer)
    assert tokenizer.batch_decode(ids_of(other), skip_special_tokens=True) != completions
    with pytest.raises(ValueError, match=r"decodes the completion ids it was given to other text.*share the policy's"):
        reward(prompts, completions, ids_of(other))
    # The policy's own ids pass, and are scored
    reward = LikelihoodReward(AutoModelForCausalLM.from_pretrained(tiny_model_path), tokenizer)
    assert len(reward(prompts, completions, ids_of(tokenizer))) == 2


def test_likelihood_reward_refuses_a_tokenizer_without_padding_when_built(tiny_model_path):
    from transformers import AutoModelForCausalLM

    from trl_irl import LikelihoodReward

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match=r"has no padding token.*tokenizer.pad_token = tokenizer.eos_token"):
        LikelihoodReward(AutoModelForCausalLM.from_pretrained(tiny_model_path), tokenizer)


def test_likelihood_reward_takes_its_temperature_when_loaded_and_refuses_one_that_is_not_positive(tiny_model_path):
    from trl_irl import LikelihoodReward

    # Given to `from_pretrained`, a temperature went to the model's constructor and failed there
    assert LikelihoodReward.from_pretrained(tiny_model_path, temperature=0.7).temperature == 0.7
    for temperature in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"The `temperature` of `LikelihoodReward` must be positive"):
            LikelihoodReward.from_pretrained(tiny_model_path, temperature=temperature)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_likelihood_reward_of_a_conversation_is_the_completion_s_log_likelihood_after_the_chat_template(
    tiny_model_path, temperature
):
    from transformers import AutoModelForCausalLM

    from trl_irl import LikelihoodReward

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    prompts = [
        [{"role": "user", "content": "Count from 1 by 1, 3 numbers:"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count from 5 by 2, 2 numbers:"}],
    ]
    completion_ids = [tokenizer(" 1 2 3")["input_ids"] + [tokenizer.eos_token_id], tokenizer(" 5 7")["input_ids"]]
    completions = [[{"role": "assistant", "content": tokenizer.decode(ids)}] for ids in completion_ids]

    rewards = LikelihoodReward(model, tokenizer, temperature=temperature)(
        prompts=prompts, completions=completions, completion_ids=completion_ids
    )

    for prompt, ids, reward in zip(prompts, completion_ids, rewards, strict=True):
        # By hand: the prompt as GRPO renders it for generation, then the completion's tokens, one sequence at a time
        prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
        prompt_ids = prompt_ids["input_ids"]
        sequence = torch.tensor([prompt_ids + ids])
        with torch.no_grad():
            log_probs = (model(sequence).logits[0, :-1] / temperature).log_softmax(-1)
        targets = sequence[0, 1:]
        token_log_probs = log_probs.gather(-1, targets[:, None])[:, 0][len(prompt_ids) - 1 :]
        assert reward == pytest.approx(token_log_probs.sum().item(), rel=1e-5, abs=1e-5)
