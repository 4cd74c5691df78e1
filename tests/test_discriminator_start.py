"""trl_irl/trainer/discriminator_start.py: the discriminator before the policy moves (pre-training, knowledge gap)."""

import pytest
import torch
import toy_colors
from datasets import Dataset
from helpers import (
    COUNTING_PROMPT,
    adversarial_config,
    colours_training_overrides,
    likelihood_ratio_config,
    logged_warnings,
    token_log_likelihoods,
)
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_irl import GAILConfig, GAILTrainer
from trl_irl.discriminator import LikelihoodRatioDiscriminator


def _config(tmp_path, **overrides) -> GAILConfig:
    return adversarial_config(GAILConfig, tmp_path, **overrides)


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_the_discriminator_pretraining_shows_progress_unless_tqdm_is_off(
    tmp_path, tiny_model_path, prompt_completion_dataset, capsys, disable_tqdm
):
    trainer = GAILTrainer(
        model=tiny_model_path,
        args=_config(tmp_path, max_steps=1, disc_pretraining_steps=3, disable_tqdm=disable_tqdm),
        train_dataset=prompt_completion_dataset,
    )
    capsys.readouterr()
    trainer.train()
    shown = "Pre-training the discriminator" in capsys.readouterr().err
    assert shown != disable_tqdm


class TestPretraining:
    @pytest.mark.parametrize("token_level", [False, True])
    def test_a_likelihood_step_takes_sft_s_loss_and_micro_batches_keep_the_step(self, tiny_model_path, token_level):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        prompt_ids = tokenizer(COUNTING_PROMPT)["input_ids"]
        responses = [tokenizer(" 1 2 3")["input_ids"] + [tokenizer.eos_token_id], tokenizer(" 7")["input_ids"]]
        samples = [(tuple(prompt_ids), tuple(response)) for response in responses]
        model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        # SFT's loss: the mean negative log-likelihood over every response token of the batch
        expected_loss = -torch.cat(
            [token_log_likelihoods(model, tokenizer, COUNTING_PROMPT, response) for response in responses]
        ).mean()

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
            args=likelihood_ratio_config(
                GAILConfig,
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
        args=likelihood_ratio_config(GAILConfig, tmp_path / "copy", max_steps=1),
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
        token_log_likelihoods(
            policy, tokenizer, prompt, tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        )
        for prompt, d in zip(prompts, demonstrations, strict=True)
    ]
    by_hand = -torch.cat(token_log_probs).mean().item()
    assert first["disc/start_nll_policy"] == pytest.approx(by_hand, rel=1e-5)

    # Pre-trained on the demonstrations, the discriminator knows more: no second warning
    pretrained = GAILTrainer(
        model=tiny_model_path,
        args=likelihood_ratio_config(
            GAILConfig,
            tmp_path / "pretrained",
            max_steps=1,
            disc_pretraining_steps=10,
            disc_pretraining_learning_rate=1e-2,
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
        args=likelihood_ratio_config(
            GAILConfig, tmp_path, max_steps=1, disc_pretraining_steps=10, disc_pretraining_learning_rate=1e-2
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
        token_log_likelihoods(
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


def test_the_pre_training_and_the_updates_step_at_their_own_rates_with_their_own_clipping(
    tmp_path, tiny_model_path, prompt_completion_dataset
):
    # Pre-training: `disc_pretraining_learning_rate` decaying linearly to 0, clipped to `max_grad_norm` as SFT is;
    # the adversarial updates: `disc_learning_rate`, clipped to `disc_max_grad_norm`. Read at each optimizer step
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    trainer = GAILTrainer(
        model=tiny_model_path,
        args=likelihood_ratio_config(
            GAILConfig,
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
