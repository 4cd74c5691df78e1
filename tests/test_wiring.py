"""
The adversarial trainers' plumbing, checked end to end: every configuration field lands where it acts, the configured
divergence turns logits into GRPO's rewards, AIRL's `-beta log pi` reaches the discriminator's loss and the reward,
GRPO's loss receives the reference per-token advantages, a completion equal to a demonstration reaches the
discriminator exactly as the demonstration does, and evaluation scores without training.
"""

import math

import pytest
import torch
from datasets import Dataset
from helpers import adversarial_config

from trl_irl import AIRLConfig, AIRLTrainer, DiscriminatorReward, GAILConfig, GAILTrainer
from trl_irl.token_advantages import token_level_advantages


def _parameters(model) -> list[torch.Tensor]:
    return [param.detach().clone() for param in model.parameters()]


def _unchanged(before: list[torch.Tensor], model) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


class TestConfigurationWiring:
    def test_every_discriminator_and_reward_field_lands_where_it_acts(
        self, tmp_path, tiny_model_path, prompt_completion_dataset
    ):
        args = adversarial_config(
            GAILConfig,
            tmp_path,
            disc_type="classifier",
            divergence="alpha",
            divergence_alpha=0.3,
            reward_clip=5.0,
            disc_updates_per_generation=3,
            disc_scoring="after_update",
            disc_max_length=64,
            disc_label_smoothing=0.2,
            disc_gradient_penalty=0.5,
            disc_warmup_generations=2,
            disc_init_kwargs={"output_hidden_states": True},  # a config value, to see it arrive
            disc_max_grad_norm=0.7,
            disc_micro_batch_size=3,
            disc_learning_rate=3e-4,
            disc_replay_buffer_size=7,
            disc_demonstrations_per_update=5,
            disc_heldout_fraction=0.25,
        )
        trainer = GAILTrainer(model=tiny_model_path, args=args, train_dataset=prompt_completion_dataset)
        reward, discriminator = trainer.discriminator_reward, trainer.discriminator
        assert (reward.divergence, reward.alpha, reward.reward_clip) == ("alpha", 0.3, 5.0)
        assert (reward.updates_per_generation, reward.scoring, reward.warmup_generations) == (3, "after_update", 2)
        assert (reward.demonstrations_per_update, reward.completions_per_prompt) == (5, 4)
        assert len(reward.demonstration_pool.heldout_rows) == 16  # a quarter of 64
        assert reward.logit_offsets is None  # GAIL's classifier logit is its output
        assert discriminator.max_length == 64
        assert (discriminator.label_smoothing, discriminator.gradient_penalty) == (0.2, 0.5)
        assert discriminator.replay_buffer.capacity == 7
        assert [group["lr"] for group in discriminator.optimizer.param_groups] == [3e-4]
        assert discriminator.model.config.output_hidden_states
        assert (discriminator.max_grad_norm, discriminator.micro_batch_size) == (0.7, 3)
        assert discriminator.autocast_dtype is None  # bf16=False

    @pytest.mark.parametrize("level", ["sequence", "token"])
    def test_the_likelihood_ratio_scores_at_the_sampling_temperature(self, tmp_path, tiny_model_path, level):
        trainer = GAILTrainer(
            model=tiny_model_path,
            args=adversarial_config(GAILConfig, tmp_path, temperature=0.7, disc_level=level),
            train_dataset=Dataset.from_list([{"prompt": "Say:", "completion": " 1 2 3"}] * 4),
        )
        assert trainer.discriminator.temperature == 0.7
        assert trainer.discriminator.token_level == (level == "token")


def _closed_form_reward(logit: float, divergence: str, alpha: float) -> float:
    if divergence == "js":
        return math.log1p(math.exp(logit)) - math.log(2)
    if divergence == "reverse_kl":
        return logit
    if divergence == "forward_kl":
        return math.expm1(logit)
    return math.expm1((1 - alpha) * logit) / (1 - alpha)


@pytest.mark.parametrize(
    ("divergence", "alpha"), [("js", 0.5), ("reverse_kl", 0.5), ("forward_kl", 0.5), ("alpha", 0.3), ("alpha", 2.0)]
)
def test_the_configured_divergence_turns_the_scored_logits_into_grpo_s_rewards(
    tmp_path, tiny_model_path, prompt_completion_dataset, monkeypatch, divergence, alpha
):
    # The logits are captured on their way to the reward; the rewards and the mean GRPO logs must be the closed form
    # of them. A classifier head, so that the logits are not all 0 as the likelihood ratio's are at the start
    import trl_irl.rewards

    scored = []
    policy_reward = trl_irl.rewards.policy_reward

    def capture(logits, *args):
        scored.append((logits.clone(), args))
        return policy_reward(logits, *args)

    monkeypatch.setattr(trl_irl.rewards, "policy_reward", capture)
    args = adversarial_config(
        GAILConfig,
        tmp_path,
        disc_type="classifier",
        divergence=divergence,
        divergence_alpha=alpha,
        max_steps=1,
    )
    trainer = GAILTrainer(model=tiny_model_path, args=args, train_dataset=prompt_completion_dataset)
    trainer.train()
    [(logits, arguments)] = scored
    assert arguments == (divergence, alpha)
    expected = [_closed_form_reward(logit, divergence, alpha) for logit in logits.tolist()]
    logged = trainer.state.log_history[0]["rewards/discriminator/mean"]
    assert logged == pytest.approx(sum(expected) / len(expected), rel=1e-5, abs=1e-6)


def test_during_warm_up_only_the_discriminator_learns(tmp_path, tiny_model_path, prompt_completion_dataset):
    args = adversarial_config(
        GAILConfig, tmp_path, disc_type="classifier", disc_warmup_generations=1, max_steps=1, beta=0.0
    )
    trainer = GAILTrainer(model=tiny_model_path, args=args, train_dataset=prompt_completion_dataset)
    policy_before, discriminator_before = _parameters(trainer.model), _parameters(trainer.discriminator.model)
    trainer.train()
    assert _unchanged(policy_before, trainer.model)  # every reward 0: no advantage, no policy gradient
    assert not _unchanged(discriminator_before, trainer.discriminator.model)


PROMPTS = ["Count from 1 by 1, 3 numbers:", "Count from 5 by 2, 3 numbers:"]
DEMONSTRATIONS = [" 1 2 3", " 5 7 9"]
COMPLETIONS = [" 1 3", " 2", " 1 2 3", " 4 4", " 5 9 7", " 5", " 7 9", " 6 7 8"]


def _independent_log_pi(model, tokenizer, prompt: str, response_ids: list[int], temperature: float) -> torch.Tensor:
    """`log pi(y_t | x, y_<t)` of each response token, from one forward of the policy on `prompt + response`."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt_ids + response_ids])).logits[0, len(prompt_ids) - 1 : -1]
    log_probs = (logits / temperature).log_softmax(-1)
    return log_probs.gather(-1, torch.tensor(response_ids)[:, None])[:, 0]


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_airl_offsets_reach_the_discriminator_loss_and_the_reward(tmp_path, tiny_model_path, monkeypatch, level):
    temperature, coefficient = 0.7, 0.5
    trainer = AIRLTrainer(
        model=tiny_model_path,
        args=adversarial_config(
            AIRLConfig,
            tmp_path,
            disc_type="classifier",
            disc_level=level,
            log_prob_coef=coefficient,
            log_prob_reduction="mean",
            temperature=temperature,
            disc_demonstration_source="batch",
        ),
        train_dataset=Dataset.from_list(
            [{"prompt": p, "completion": d} for p, d in zip(PROMPTS, DEMONSTRATIONS, strict=True)]
        ),
    )
    tokenizer, model = trainer.processing_class, trainer.model
    # A generation batch as GRPO hands it over: each prompt 4 times, with the generated ids
    prompts = [prompt for prompt in PROMPTS for _ in range(4)]
    demonstrations = [demonstration for demonstration in DEMONSTRATIONS for _ in range(4)]
    completion_ids = [
        tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for c in COMPLETIONS
    ]

    def offsets(prompt_list, response_ids_list):
        per_response = [
            -coefficient * _independent_log_pi(model, tokenizer, prompt, ids, temperature)
            for prompt, ids in zip(prompt_list, response_ids_list, strict=True)
        ]
        return torch.cat(per_response) if level == "token" else torch.stack([o.mean() for o in per_response])

    demonstration_ids = [
        tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for d in DEMONSTRATIONS
    ]
    expected_expert = offsets(PROMPTS, demonstration_ids)  # one copy of each demonstration
    expected_policy = offsets(prompts, completion_ids)
    policy_samples = trainer.sample_encoder(prompts, COMPLETIONS, completion_ids)
    outputs_before = trainer.discriminator.logits(policy_samples)  # the classifier's own outputs, no offset

    trainer.model.train()  # the discriminator learns only while the trainer trains
    received = []
    update = trainer.discriminator.update
    monkeypatch.setattr(trainer.discriminator, "update", lambda e, p, **kw: received.append(kw) or update(e, p, **kw))
    rewards = trainer.discriminator_reward(prompts, COMPLETIONS, completion_ids, demonstration=demonstrations)

    torch.testing.assert_close(received[0]["expert_logit_offsets"], expected_expert, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(received[0]["policy_logit_offsets"], expected_policy, rtol=1e-4, atol=1e-5)
    # AIRL's reverse-KL reward is the logit, output plus offset, scored before the update
    expected_logits = outputs_before + expected_policy
    if level == "token":
        scored = torch.cat(trainer.discriminator_reward.token_rewards)
        torch.testing.assert_close(scored, expected_logits, rtol=1e-4, atol=1e-5)
        expected_rewards = [r.sum().item() for r in expected_logits.split([len(ids) for ids in completion_ids])]
    else:
        expected_rewards = expected_logits.tolist()
    assert rewards == pytest.approx(expected_rewards, rel=1e-4, abs=1e-5)


def test_grpo_s_loss_receives_the_reference_token_advantages(
    tmp_path, tiny_model_path, prompt_completion_dataset, monkeypatch
):
    trainer = GAILTrainer(
        model=tiny_model_path,
        # A classifier: the likelihood ratio's first rewards are all 0, and so would be the advantages
        args=adversarial_config(GAILConfig, tmp_path, disc_level="token", disc_type="classifier", max_steps=1),
        train_dataset=prompt_completion_dataset,
    )
    captured = {}
    original_call = DiscriminatorReward.__call__

    def capture_rewards(self, *args, **kwargs):
        rewards = original_call(self, *args, **kwargs)
        captured["token_rewards"] = [r.clone() for r in self.token_rewards]
        return rewards

    generate_and_score = trainer._generate_and_score_completions

    def capture_output(inputs):
        output = generate_and_score(inputs)
        captured["advantages"], captured["mask"] = output["advantages"].clone(), output["completion_mask"].clone()
        return output

    monkeypatch.setattr(DiscriminatorReward, "__call__", capture_rewards)
    monkeypatch.setattr(trainer, "_generate_and_score_completions", capture_output)
    trainer.train()

    mask = captured["mask"]
    rewards = torch.zeros(mask.shape)
    for row, token_rewards in enumerate(captured["token_rewards"]):
        rewards[row, : len(token_rewards)] = token_rewards
    reference = token_level_advantages(rewards, mask, trainer.num_generations)
    torch.testing.assert_close(captured["advantages"], reference)
    assert (reference != 0).any()
    # GRPO shuffles the rows of a generation batch before its loss: the same values reach it
    received = trainer._buffered_inputs[0]["advantages"]
    torch.testing.assert_close(received.flatten().sort().values, reference.flatten().sort().values)


@pytest.mark.parametrize(
    "dataset_name", ["prompt_completion_dataset", "conversational_prompt_completion_dataset", "conversational_dataset"]
)
@pytest.mark.parametrize("disc_type", ["classifier", "likelihood_ratio"])
@pytest.mark.parametrize("level", ["sequence", "token"])
def test_a_completion_equal_to_the_demonstration_reaches_the_discriminator_identically(
    tmp_path, tiny_model_path, request, dataset_name, disc_type, level
):
    # Otherwise the discriminator can learn the formatting (a space, an end-of-sequence token, a chat template) instead
    # of the content
    trainer = GAILTrainer(
        model=tiny_model_path,
        args=adversarial_config(
            GAILConfig,
            tmp_path,
            disc_type=disc_type,
            disc_level=level,
            max_completion_length=64,
        ),
        train_dataset=request.getfixturevalue(dataset_name).select(range(8)),
    )
    tokenizer = trainer.processing_class
    for row in trainer.train_dataset:
        prompt, demonstration = row["prompt"], row["demonstration"]
        # What the policy generates to say the same thing, as GRPO hands it over: the tokens, the end-of-sequence
        # token, and their decoding without special tokens
        text = demonstration if isinstance(demonstration, str) else demonstration[-1]["content"]
        completion_ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        decoded = tokenizer.decode(completion_ids, skip_special_tokens=True)
        completion = decoded if isinstance(prompt, str) else [{"role": "assistant", "content": decoded}]
        as_generated = trainer.sample_encoder([prompt], [completion], [completion_ids])
        assert as_generated == trainer.sample_encoder([prompt], [demonstration])


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_evaluation_scores_without_training_the_discriminator(
    tmp_path, tiny_model_path, prompt_completion_dataset, level
):
    args = adversarial_config(
        GAILConfig,
        tmp_path,
        disc_level=level,
        disc_type="classifier",
        num_generations_eval=2,
        per_device_eval_batch_size=6,  # groups of 2 (`num_generations_eval`), not of 4
    )
    trainer = GAILTrainer(
        model=tiny_model_path,
        args=args,
        train_dataset=prompt_completion_dataset.select(range(32)),
        eval_dataset=prompt_completion_dataset.select(range(32, 44)),
    )
    discriminator_before = _parameters(trainer.discriminator.model)
    metrics = trainer.evaluate()
    assert {"eval_rewards/discriminator/mean", "eval_disc/logit_scored"} <= set(metrics)
    assert "eval_disc/loss" not in metrics  # no update during evaluation
    assert _unchanged(discriminator_before, trainer.discriminator.model)
    assert trainer.discriminator_reward.num_generations_seen == 0


def test_in_a_run_rewards_stay_within_reward_clip_the_targets_are_smoothed_and_the_gradient_penalty_is_paid(
    tmp_path, tiny_model_path, prompt_completion_dataset, monkeypatch
):
    # What the unit tests check of each, in a trainer run: GRPO receives clipped rewards, the discriminator's loss
    # aims at the smoothed targets and carries the R1 penalty on demonstrations
    import trl_irl.discriminator.losses as losses_module

    targets, class_loss_share = set(), losses_module.class_loss_share

    def recording_share(logits, target, num_logits):
        targets.add(round(target, 6))
        return class_loss_share(logits, target, num_logits)

    monkeypatch.setattr(losses_module, "class_loss_share", recording_share)
    clip = 0.05
    args = adversarial_config(
        GAILConfig,
        tmp_path,
        disc_type="classifier",
        divergence="reverse_kl",  # its reward is the logit itself, unbounded without the clip
        reward_clip=clip,
        disc_label_smoothing=0.2,
        disc_gradient_penalty=1.0,
        disc_learning_rate=3e-2,
        max_steps=4,
    )
    trainer = GAILTrainer(model=tiny_model_path, args=args, train_dataset=prompt_completion_dataset)
    scored = []
    original_call = type(trainer.discriminator_reward).__call__

    def recording_call(self, *call_args, **kwargs):
        rewards = original_call(self, *call_args, **kwargs)
        scored.extend(rewards)
        return rewards

    monkeypatch.setattr(type(trainer.discriminator_reward), "__call__", recording_call)
    trainer.train()
    assert scored and all(abs(reward) <= clip + 1e-7 for reward in scored)  # float32's 0.05
    assert any(abs(reward) == pytest.approx(clip) for reward in scored)  # the clip acted
    penalties = [
        entry["disc/gradient_penalty"] for entry in trainer.state.log_history if "disc/gradient_penalty" in entry
    ]
    assert penalties and all(penalty > 0 for penalty in penalties)
    assert targets == {0.9, 0.1}  # 1 - 0.2 / 2 for demonstrations, 0.2 / 2 for the policy's samples
