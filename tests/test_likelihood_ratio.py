"""The likelihood-ratio discriminator (`trl_irl/discriminator/likelihood_ratio.py`), alone and inside GAIL and AIRL."""

import copy

import pytest
import torch
import toy_colors
from datasets import Dataset
from helpers import adversarial_config, colours_training_overrides, logged_warnings, train_and_check_both_models_learn
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_irl import AIRLConfig, AIRLTrainer, GAILConfig, GAILTrainer, LikelihoodReward
from trl_irl.discriminator import LikelihoodRatioDiscriminator


PROMPT = "Count from 1 by 1, 3 numbers:"


def _likelihood_ratio_config(tmp_path, config_class=GAILConfig, **overrides):
    return adversarial_config(config_class, tmp_path, disc_type="likelihood_ratio", **overrides)


def _log_q(model, tokenizer, prompt, response_ids, temperature=1.0, grad=False) -> torch.Tensor:
    """`log q(y_t | x, y_<t)` of each response token, computed directly (differentiable with `grad`)."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    with torch.set_grad_enabled(grad):
        logits = model(input_ids=torch.tensor([prompt_ids + response_ids])).logits[0] / temperature
    log_probs = logits.log_softmax(-1)[len(prompt_ids) - 1 : -1]
    return log_probs.gather(-1, torch.tensor(response_ids)[:, None]).squeeze(-1)


class TestLikelihoodRatioDiscriminator:
    def test_logits_are_log_q_summed_or_per_token(self, tiny_model_path):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        prompt_ids = tokenizer(PROMPT)["input_ids"]
        responses = [tokenizer(" 1 2 3")["input_ids"] + [tokenizer.eos_token_id], tokenizer(" 7")["input_ids"]]
        samples = [(tuple(prompt_ids), tuple(response)) for response in responses]
        expected = [_log_q(model, tokenizer, PROMPT, response, temperature=0.7) for response in responses]

        sequence = LikelihoodRatioDiscriminator(model, tokenizer, temperature=0.7)
        torch.testing.assert_close(sequence.logits(samples), torch.stack([e.sum() for e in expected]))
        token = LikelihoodRatioDiscriminator(model, tokenizer, token_level=True, temperature=0.7)
        torch.testing.assert_close(token.logits(samples), torch.cat(expected))

    def test_refuses_a_model_without_language_modelling_head(self, tiny_model_path):
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
        with pytest.raises(ValueError, match="AutoModelForCausalLM"):
            LikelihoodRatioDiscriminator(model, AutoTokenizer.from_pretrained(tiny_model_path))

    def test_a_head_tied_to_the_embeddings_resumes(self, tmp_path, tiny_model_path):
        # Most small checkpoints tie the head to the input embeddings, and `save_pretrained` writes the tied weight
        # once: resuming loaded strictly and failed on the head it did not find
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(tiny_model_path, tie_word_embeddings=True)
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        prompt_ids = tuple(tokenizer(PROMPT)["input_ids"])
        expert, policy = [(prompt_ids, (5, 6, 7))], [(prompt_ids, (9, 9))]

        def build():
            torch.manual_seed(0)
            return LikelihoodRatioDiscriminator(
                AutoModelForCausalLM.from_config(config), tokenizer, learning_rate=1e-2
            )

        trained = build()
        trained.update(expert, policy)
        trained.save_pretrained(tmp_path)
        trained.save_state(tmp_path)
        resumed = build()
        resumed.load(tmp_path)
        assert resumed.model.lm_head.weight is resumed.model.model.embed_tokens.weight
        assert resumed.update(expert, policy).stats == pytest.approx(trained.update(expert, policy).stats)
        torch.testing.assert_close(resumed.model.lm_head.weight, trained.model.lm_head.weight)

    def test_weights_of_another_architecture_are_refused_by_name(self, tmp_path, tiny_model_path):
        from transformers import AutoModelForSequenceClassification

        from trl_irl import Discriminator

        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        classifier = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
        saved = Discriminator(classifier, tokenizer)
        saved.save_pretrained(tmp_path)
        saved.save_state(tmp_path)
        discriminator = LikelihoodRatioDiscriminator(AutoModelForCausalLM.from_pretrained(tiny_model_path), tokenizer)
        with pytest.raises(ValueError, match="model.safetensors does not fit.*missing.*lm_head.*unexpected.*score"):
            discriminator.load(tmp_path)

    def test_a_response_must_leave_room_for_a_prompt_token(self, tiny_model_path):
        discriminator = LikelihoodRatioDiscriminator(
            AutoModelForCausalLM.from_pretrained(tiny_model_path),
            AutoTokenizer.from_pretrained(tiny_model_path),
            max_length=4,
        )
        assert discriminator.logits([((1, 2, 3), (4, 5, 6))]).shape == (1,)
        with pytest.raises(ValueError, match="max_length"):
            discriminator.logits([((1, 2, 3), (4, 5, 6, 7))])


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_logit_is_zero_while_the_policy_is_the_starting_checkpoint(tmp_path, tiny_model_path, level):
    trainer = GAILTrainer(
        model=tiny_model_path,
        args=_likelihood_ratio_config(tmp_path, disc_level=level, temperature=0.7),
        train_dataset=Dataset.from_list([{"prompt": PROMPT, "completion": " 1 2 3"}] * 4),
    )
    reward = trainer.discriminator_reward
    tokenizer = trainer.processing_class
    for responses, completion_ids in [
        ([" 1 2 3"], None),
        ([" 4 5"], [tokenizer(" 4 5 9")["input_ids"]]),  # generated ids take precedence over the text
    ]:
        samples = trainer.sample_encoder([PROMPT], responses, completion_ids)
        logits = trainer.discriminator.logits(samples, reward.logit_offsets([PROMPT], responses, completion_ids))
        assert logits.shape == ((1,) if level == "sequence" else (len(samples[0][1]),))
        torch.testing.assert_close(logits, torch.zeros_like(logits), atol=1e-5, rtol=0)


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_likelihood_ratio_gail_trains_both_models(tmp_path, tiny_model_path, prompt_completion_dataset, level):
    trainer = GAILTrainer(
        model=tiny_model_path,
        args=_likelihood_ratio_config(tmp_path, disc_level=level),
        train_dataset=prompt_completion_dataset,
    )
    train_and_check_both_models_learn(trainer)
    assert {"disc/heldout_acc", "disc/heldout_loss", "disc/loss"} <= set(trainer.state.log_history[0])


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_likelihood_ratio_airl_leaves_a_reward_model_that_serves_grpo(
    tmp_path, tiny_model_path, prompt_completion_dataset, level
):
    from helpers import one_step_grpo_config
    from trl import GRPOTrainer

    config = _likelihood_ratio_config(tmp_path, AIRLConfig, disc_level=level)
    assert (config.log_prob_coef, config.log_prob_reduction) == (1.0, "sum")
    trainer = AIRLTrainer(model=tiny_model_path, args=config, train_dataset=prompt_completion_dataset)
    trainer.train()
    trainer.save_reward_model(tmp_path / "reward_model")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "reward_model")
    for (name, saved), (_, trained) in zip(
        loaded.named_parameters(), trainer.discriminator.model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(saved, trained, msg=name)
    assert "AutoModelForCausalLM" in (tmp_path / "reward_model" / "README.md").read_text()

    # The reward is log q_phi(y | x), the discriminator's own output: at the token level, the sum of its token terms
    reward = LikelihoodReward.from_pretrained(tmp_path / "reward_model")
    tokenizer = reward.tokenizer
    completion_ids = [tokenizer(" 1 2 3")["input_ids"] + [tokenizer.eos_token_id], tokenizer(" 9")["input_ids"]]
    rewards = reward([PROMPT, PROMPT], [" 1 2 3", " 9"], completion_ids)
    samples = [(tuple(tokenizer(PROMPT)["input_ids"]), tuple(ids)) for ids in completion_ids]
    logits = trainer.discriminator.logits(samples)
    if level == "token":
        assert logits.shape == (sum(len(ids) for ids in completion_ids),)
        logits = torch.stack([part.sum() for part in logits.split([len(ids) for ids in completion_ids])])
    torch.testing.assert_close(torch.tensor(rewards), logits)
    grpo = GRPOTrainer(
        model=tiny_model_path,
        reward_funcs=reward,
        args=one_step_grpo_config(tmp_path / "grpo"),
        train_dataset=prompt_completion_dataset,
    )
    grpo.train()
    assert "rewards/likelihood/mean" in grpo.state.log_history[0]


@pytest.mark.slow
def test_heldout_accuracy_rises_above_chance(tmp_path, colours_sft_path):
    # The policy is held still (every reward is 0 during warm-up, and `beta=0`), so only the discriminator learns: it
    # starts at l = 0 (accuracy 0.5 by the tie convention) and must tell held-out demonstrations from fresh samples
    # of the SFT policy, which puts much of its mass on invalid responses. Measured with the default 2 updates per
    # generation (6 held-out demonstrations against 16 samples a generation, so each value is noisy): 0.50 at the
    # first generation, 0.34 to 0.56 over the next eight, 0.72 on average over the last 20 of 30 (0.66 with 1 update).
    trainer = GAILTrainer(
        model=colours_sft_path,
        args=_likelihood_ratio_config(
            tmp_path, **colours_training_overrides(max_steps=30, logging_steps=1, disc_warmup_generations=30)
        ),
        train_dataset=toy_colors.demonstrations(64, seed=1),
    )
    policy_before = [param.clone() for param in trainer.model.parameters()]
    trainer.train()
    assert all(torch.equal(a, b) for a, b in zip(policy_before, trainer.model.parameters(), strict=True))
    accuracies = [log["disc/heldout_acc"] for log in trainer.state.log_history if "disc/heldout_acc" in log]
    assert len(accuracies) == 30
    assert accuracies[0] == pytest.approx(0.5)
    assert sum(accuracies[-20:]) / 20 > 0.6, accuracies


class TestPretraining:
    @pytest.mark.parametrize("token_level", [False, True])
    def test_a_likelihood_step_takes_sft_s_loss_and_micro_batches_keep_the_step(self, tiny_model_path, token_level):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        prompt_ids = tokenizer(PROMPT)["input_ids"]
        responses = [tokenizer(" 1 2 3")["input_ids"] + [tokenizer.eos_token_id], tokenizer(" 7")["input_ids"]]
        samples = [(tuple(prompt_ids), tuple(response)) for response in responses]
        model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        # SFT's loss: the mean negative log-likelihood over every response token of the batch
        expected_loss = -torch.cat([_log_q(model, tokenizer, PROMPT, response) for response in responses]).mean()

        stepped = []
        for micro_batch_size in (None, 1):
            discriminator = LikelihoodRatioDiscriminator(
                AutoModelForCausalLM.from_pretrained(tiny_model_path),
                tokenizer,
                token_level=token_level,
                micro_batch_size=micro_batch_size,
            )
            assert discriminator.negative_log_likelihood(samples) == pytest.approx(expected_loss.item(), rel=1e-5)
            optimizer = torch.optim.SGD(discriminator.model.parameters(), lr=0.5)
            assert discriminator.likelihood_update(samples, optimizer) == pytest.approx(expected_loss.item(), rel=1e-5)
            assert discriminator.negative_log_likelihood(samples) < expected_loss.item()
            stepped.append(list(discriminator.model.parameters()))
        for whole, micro in zip(*stepped, strict=True):
            torch.testing.assert_close(whole, micro)

    @pytest.mark.slow
    def test_gail_pretrains_the_discriminator_before_the_policy_moves(self, tmp_path, colours_sft_path, monkeypatch):
        trainer = GAILTrainer(
            model=colours_sft_path,
            args=_likelihood_ratio_config(
                tmp_path,
                **colours_training_overrides(
                    max_steps=1,
                    logging_steps=1,
                    disc_pretraining_steps=40,
                    disc_pretraining_batch_size=12,
                    disc_pretraining_learning_rate=3e-3,
                ),
            ),
            train_dataset=toy_colors.demonstrations(64, seed=1),
        )
        pool = trainer.discriminator_reward.demonstration_pool
        draws, sample = [], pool.sample

        def recording_sample(count, key, heldout=False):
            draws.append((count, key[0], heldout))
            return sample(count, key, heldout)

        monkeypatch.setattr(pool, "sample", recording_sample)
        trainer.train()
        pretraining_draws = [(count, heldout) for count, first, heldout in draws if first == "pretraining"]
        # The held-out rows, one batch per step, then the same held-out rows for the knowledge gap at the start
        assert pretraining_draws == [(6, True)] + [(12, False)] * 40 + [(6, True)]
        first = trainer.state.log_history[0]
        # Fitted to the training rows, and better on the held-out ones too: it now knows more than the policy
        assert first["disc/pretraining_heldout_nll_end"] < first["disc/pretraining_heldout_nll_start"]
        assert first["disc/pretraining_loss"] < first["disc/pretraining_heldout_nll_start"]
        # So `l = log q_phi - log pi` is no longer 0: held-out demonstrations score above the policy's own samples
        assert first["disc/heldout_acc"] > 0.5
        later = [log for log in trainer.state.log_history[1:] if "disc/pretraining_loss" in log]
        assert not later  # logged once

    @pytest.mark.parametrize(
        ("overrides", "named"),
        [
            ({"disc_type": "classifier"}, "disc_type"),
            ({"disc_demonstration_source": "batch"}, "disc_demonstration_source"),
            ({"disc_pretraining_learning_rate": 0.0}, "disc_pretraining_learning_rate"),
            ({"disc_pretraining_steps": -1}, "disc_pretraining_steps"),
            ({"disc_pretraining_batch_size": 0}, "disc_pretraining_batch_size"),
        ],
    )
    def test_settings_it_cannot_use_are_refused_by_name(self, tmp_path, overrides, named):
        settings = {"disc_type": "likelihood_ratio", "disc_pretraining_steps": 5, **overrides}
        with pytest.raises(ValueError, match=named):
            adversarial_config(GAILConfig, tmp_path, **settings)


def test_the_start_logs_how_much_more_than_the_policy_the_discriminator_knows(
    tmp_path, tiny_model_path, prompt_completion_dataset, caplog
):
    warnings = logged_warnings(caplog, "trl_irl.trainer.discriminator_start")
    # The default discriminator is a copy of the policy: it knows nothing more, and is warned about once
    default = GAILTrainer(
        model=tiny_model_path,
        args=_likelihood_ratio_config(tmp_path / "copy", max_steps=1),
        train_dataset=prompt_completion_dataset,
    )
    pool = default.discriminator_reward.demonstration_pool
    prompts, demonstrations = pool.sample(len(pool.heldout_rows), ("pretraining",), heldout=True)
    default.train()
    first = default.state.log_history[0]
    assert abs(first["disc/start_knowledge_gap"]) < 1e-4
    assert len(warnings) == 1 and "knows no more of the demonstrations than the policy" in warnings[0]
    # The policy's negative log-likelihood per token of the held-out demonstrations, by hand (the policy trained
    # for one step since; its weights at the start are the checkpoint's)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = default.processing_class
    token_log_probs = [
        _log_q(
            policy, tokenizer, prompt, tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        )
        for prompt, d in zip(prompts, demonstrations, strict=True)
    ]
    by_hand = -torch.cat(token_log_probs).mean().item()
    assert first["disc/start_nll_policy"] == pytest.approx(by_hand, rel=1e-5)

    # Pre-trained on the demonstrations, the discriminator knows more: no second warning
    pretrained = GAILTrainer(
        model=tiny_model_path,
        args=_likelihood_ratio_config(
            tmp_path / "pretrained", max_steps=1, disc_pretraining_steps=10, disc_pretraining_learning_rate=1e-2
        ),
        train_dataset=prompt_completion_dataset,
    )
    pretrained.train()
    assert pretrained.state.log_history[0]["disc/start_knowledge_gap"] > 0.1 and len(warnings) == 1
    # Measured on the demonstrations the pre-training's held-out figure is: the same number
    first = pretrained.state.log_history[0]
    assert first["disc/start_nll_discriminator"] == pytest.approx(first["disc/pretraining_heldout_nll_end"])


def test_with_an_evaluation_set_the_gap_is_also_measured_there_and_the_warning_reads_it(
    tmp_path, tiny_model_path, prompt_completion_dataset, caplog
):
    # Pre-trained on the counting demonstrations, the discriminator knows more of the held-out ones (the gap of the
    # test above), and less of text it never saw: the evaluation set's demonstrations, which decide the warning
    warnings = logged_warnings(caplog, "trl_irl.trainer.discriminator_start")
    eval_dataset = Dataset.from_dict(
        {"prompt": ["Say hello:", "Greet me:"], "completion": [" Hello, how are you?", " I am fine, thank you."]}
    )
    trainer = GAILTrainer(
        model=tiny_model_path,
        args=_likelihood_ratio_config(
            tmp_path, max_steps=1, disc_pretraining_steps=10, disc_pretraining_learning_rate=1e-2
        ),
        train_dataset=prompt_completion_dataset,
        eval_dataset=eval_dataset,
    )
    trainer.train()
    first = trainer.state.log_history[0]
    assert first["disc/start_knowledge_gap"] > 0.1
    assert first["disc/start_eval_knowledge_gap"] < 0
    assert len(warnings) == 1 and "2 evaluation (`eval_dataset`) demonstrations" in warnings[0]
    assert "disc/start_eval_knowledge_gap" in warnings[0]
    # The policy's figure on the evaluation demonstrations, by hand (its weights at the start are the checkpoint's)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = trainer.processing_class
    token_log_probs = [
        _log_q(
            policy,
            tokenizer,
            row["prompt"],
            tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id],
        )
        for row in eval_dataset
    ]
    assert first["disc/start_eval_nll_policy"] == pytest.approx(-torch.cat(token_log_probs).mean().item(), rel=1e-5)
    assert first["disc/start_eval_knowledge_gap"] == pytest.approx(
        first["disc/start_eval_nll_policy"] - first["disc/start_eval_nll_discriminator"]
    )


def test_a_frozen_discriminator_rewards_the_fixed_likelihood_ratio(
    tmp_path, tiny_model_path, prompt_completion_dataset
):
    from trl_irl import LikelihoodRatioReward

    # A discriminator that differs from the policy, so that the ratio is not 0
    discriminator = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    torch.manual_seed(0)
    with torch.no_grad():
        discriminator.lm_head.weight.add_(0.1 * torch.randn_like(discriminator.lm_head.weight))
    before = {name: param.clone() for name, param in discriminator.named_parameters()}
    trainer = GAILTrainer(
        model=tiny_model_path,
        discriminator=discriminator,
        args=_likelihood_ratio_config(tmp_path, disc_updates_per_generation=0, divergence="reverse_kl"),
        train_dataset=prompt_completion_dataset,
    )
    scored = []
    trainer.discriminator_reward.on_scored = lambda *args: scored.append(args)
    start = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    expected = LikelihoodRatioReward(copy.deepcopy(discriminator), start, trainer.processing_class)
    trainer.train()

    prompts, completions, completion_ids, rewards, _ = scored[0]  # the first batch, sampled by the starting policy
    assert rewards == pytest.approx(expected(prompts, completions, completion_ids), rel=1e-4, abs=1e-4)
    assert all(torch.equal(param, before[name]) for name, param in trainer.discriminator.model.named_parameters())
    assert not any("disc/loss" in entry for entry in trainer.state.log_history)


def test_the_pre_training_and_the_updates_step_at_their_own_rates_with_their_own_clipping(
    tmp_path, tiny_model_path, prompt_completion_dataset
):
    # Pre-training: `disc_pretraining_learning_rate` decaying linearly to 0, clipped to `max_grad_norm` as SFT is;
    # the adversarial updates: `disc_learning_rate`, clipped to `disc_max_grad_norm`. Read at each optimizer step
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    trainer = GAILTrainer(
        model=tiny_model_path,
        args=_likelihood_ratio_config(
            tmp_path,
            max_steps=2,
            disc_pretraining_steps=4,
            disc_pretraining_learning_rate=8e-3,
            disc_learning_rate=1e-3,
            max_grad_norm=0.05,
            disc_max_grad_norm=0.02,
        ),
        train_dataset=prompt_completion_dataset,
    )
    discriminator_parameters = set(trainer.discriminator.trainable_parameters())
    steps = []  # (learning rate, gradient norm) of each step of an optimizer of the discriminator's parameters

    def record(optimizer, args, kwargs):
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        if set(parameters) <= discriminator_parameters:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters if p.grad is not None]))
            steps.append((optimizer.param_groups[0]["lr"], norm.item()))

    handle = register_optimizer_step_pre_hook(record)
    try:
        trainer.train()
    finally:
        handle.remove()
    pretraining, updates = steps[:4], steps[4:]
    assert [rate for rate, _ in pretraining] == pytest.approx([8e-3, 6e-3, 4e-3, 2e-3])
    assert updates and all(rate == pytest.approx(1e-3) for rate, _ in updates)
    assert all(norm <= 0.05 * (1 + 1e-4) for _, norm in pretraining)
    assert all(norm <= 0.02 * (1 + 1e-4) for _, norm in updates)
    # The norms before clipping were larger: the clipping acted
    logged = [entry["disc/grad_norm"] for entry in trainer.state.log_history if "disc/grad_norm" in entry]
    assert logged and all(norm > 0.02 for norm in logged)


def test_without_held_out_demonstrations_it_trains_on_every_row_and_logs_no_held_out_figure(
    tmp_path, tiny_model_path, prompt_completion_dataset
):
    trainer = GAILTrainer(
        model=tiny_model_path,
        args=_likelihood_ratio_config(tmp_path, disc_heldout_fraction=0.0),
        train_dataset=prompt_completion_dataset,
    )
    pool = trainer.discriminator_reward.demonstration_pool
    assert pool.heldout_rows == [] and sorted(pool.training_rows) == list(range(len(prompt_completion_dataset)))
    trainer.train()
    logged = set().union(*trainer.state.log_history)
    assert not {key for key in logged if "heldout" in key}
    # What the discriminator knows at the start is measured on training rows instead
    assert {"disc/loss", "disc/start_knowledge_gap"} <= logged


class TestLikelihoodTerm:
    """`likelihood_weight` (`disc_likelihood_weight`): SFT's loss on the update's demonstrations, beside the BCE."""

    @staticmethod
    def _samples(tokenizer):
        prompt_ids = tuple(tokenizer(PROMPT)["input_ids"])
        demonstrations = [" 1 2 3", " 2 3 4"]
        policy = [" 7", " 1 1"]
        encode = [tuple(tokenizer(text)["input_ids"]) + (tokenizer.eos_token_id,) for text in demonstrations]
        return [(prompt_ids, ids) for ids in encode], [(prompt_ids, tuple(tokenizer(t)["input_ids"])) for t in policy]

    @pytest.mark.parametrize(("token_level", "micro_batch_size"), [(False, None), (True, None), (False, 1)])
    def test_an_update_steps_on_the_cross_entropy_plus_the_weighted_negative_log_likelihood(
        self, tiny_model_path, token_level, micro_batch_size
    ):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        expert, policy = self._samples(tokenizer)
        # The logit offsets `-log pi`: any constants, here made up, so that the cross-entropy's terms are not 0
        expert_offsets = torch.tensor([0.4, -0.3]) if not token_level else None
        policy_offsets = torch.tensor([1.1, 0.2]) if not token_level else None
        weight, learning_rate = 0.7, 0.5

        # By hand: the balanced cross-entropy of l = log q + offset, plus `weight` x SFT's loss on the demonstrations
        reference = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        expert_log_q = [_log_q(reference, tokenizer, PROMPT, list(ids), grad=True) for _, ids in expert]
        policy_log_q = [_log_q(reference, tokenizer, PROMPT, list(ids), grad=True) for _, ids in policy]
        if token_level:
            logits_expert, logits_policy = torch.cat(expert_log_q), torch.cat(policy_log_q)
        else:
            logits_expert = torch.stack([q.sum() for q in expert_log_q]) + expert_offsets
            logits_policy = torch.stack([q.sum() for q in policy_log_q]) + policy_offsets
        nll = -torch.cat(expert_log_q).mean()
        loss = 0.5 * (
            torch.nn.functional.softplus(-logits_expert).mean() + torch.nn.functional.softplus(logits_policy).mean()
        )
        reference.zero_grad()
        (loss + weight * nll).backward()
        expected = [param - learning_rate * param.grad for param in reference.parameters()]

        discriminator = LikelihoodRatioDiscriminator(
            AutoModelForCausalLM.from_pretrained(tiny_model_path),
            tokenizer,
            token_level=token_level,
            micro_batch_size=micro_batch_size,
            likelihood_weight=weight,
        )
        discriminator.optimizer = torch.optim.SGD(discriminator.model.parameters(), lr=learning_rate)
        update = discriminator.update(expert, policy, expert_offsets, policy_offsets)

        assert update.stats["nll_expert"] == pytest.approx(nll.item(), rel=1e-5)
        assert update.stats["loss"] == pytest.approx((loss + weight * nll).item(), rel=1e-5)
        for stepped, hand in zip(discriminator.model.parameters(), expected, strict=True):
            torch.testing.assert_close(stepped, hand, rtol=1e-4, atol=1e-6)

    def test_without_the_weight_the_step_is_the_cross_entropy_s_and_the_likelihood_is_still_logged(
        self, tiny_model_path
    ):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        expert, policy = self._samples(tokenizer)
        steps = {}
        for weight in (0.0, 1.0):
            discriminator = LikelihoodRatioDiscriminator(
                AutoModelForCausalLM.from_pretrained(tiny_model_path), tokenizer, likelihood_weight=weight
            )
            discriminator.optimizer = torch.optim.SGD(discriminator.model.parameters(), lr=0.5)
            steps[weight] = (discriminator.update(expert, policy).stats, list(discriminator.model.parameters()))
        (plain, plain_params), (weighted, weighted_params) = steps[0.0], steps[1.0]
        assert plain["nll_expert"] == pytest.approx(weighted["nll_expert"])
        assert weighted["loss"] == pytest.approx(plain["loss"] + plain["nll_expert"], rel=1e-5)
        assert not all(torch.equal(a, b) for a, b in zip(plain_params, weighted_params, strict=True))

    def test_it_keeps_q_phi_on_the_demonstrations_the_cross_entropy_alone_pushes_it_off(self, tiny_model_path):
        # Policy samples that are the demonstrations' own words: the cross-entropy lowers q_phi on them, and with it
        # on the demonstrations; the likelihood term holds q_phi's likelihood of the demonstrations
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        expert, _ = self._samples(tokenizer)
        prompt_ids = expert[0][0]
        policy = [(prompt_ids, tuple(tokenizer(text)["input_ids"])) for text in (" 1 2", " 2 3", " 1 2 3 4")]
        nll = {}
        for weight in (0.0, 1.0):
            discriminator = LikelihoodRatioDiscriminator(
                AutoModelForCausalLM.from_pretrained(tiny_model_path),
                tokenizer,
                learning_rate=3e-3,
                likelihood_weight=weight,
            )
            start = discriminator.negative_log_likelihood(expert)
            for _ in range(10):
                discriminator.update(expert, policy)
            nll[weight] = discriminator.negative_log_likelihood(expert) - start
        assert nll[1.0] < nll[0.0]
        assert nll[1.0] < 0  # the term does more than slow the drift: q_phi fits the demonstrations better

    @pytest.mark.parametrize("weight", [-0.5, float("nan")])
    def test_a_weight_below_zero_or_nan_is_refused_by_name(self, tmp_path, tiny_model_path, weight):
        with pytest.raises(ValueError, match="likelihood_weight"):
            LikelihoodRatioDiscriminator(
                AutoModelForCausalLM.from_pretrained(tiny_model_path),
                AutoTokenizer.from_pretrained(tiny_model_path),
                likelihood_weight=weight,
            )
        with pytest.raises(ValueError, match="disc_likelihood_weight"):
            _likelihood_ratio_config(tmp_path, disc_likelihood_weight=weight)

    def test_a_classifier_with_the_weight_is_refused_by_name(self, tmp_path):
        with pytest.raises(ValueError, match="disc_likelihood_weight"):
            adversarial_config(GAILConfig, tmp_path, disc_type="classifier", disc_likelihood_weight=1.0)

    def test_gail_passes_the_weight_and_logs_the_demonstrations_likelihood(
        self, tmp_path, tiny_model_path, prompt_completion_dataset
    ):
        trainer = GAILTrainer(
            model=tiny_model_path,
            args=_likelihood_ratio_config(tmp_path, disc_likelihood_weight=0.5),
            train_dataset=prompt_completion_dataset,
        )
        assert trainer.discriminator.likelihood_weight == 0.5
        trainer.train()
        logged = [entry["disc/nll_expert"] for entry in trainer.state.log_history if "disc/nll_expert" in entry]
        assert logged and all(value > 0 for value in logged)
