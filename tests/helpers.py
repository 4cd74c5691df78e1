"""Settings and starting points shared by the trainer tests."""

from pathlib import Path

import toy_colors
from trl import GRPOConfig, SFTConfig, SFTTrainer


def fast_config(config_class, output_dir, **overrides):
    """`config_class` with small, fast, deterministic CPU settings, plus `overrides`."""
    values = {
        "output_dir": str(output_dir),
        "learning_rate": 3e-3,
        "per_device_train_batch_size": 8,
        "max_steps": 8,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "bf16": False,
        "disable_tqdm": True,
        "seed": 0,
    }
    return config_class(**{**values, **overrides})


def adversarial_config(config_class, output_dir, **overrides):
    """`fast_config` with the generation settings of the GAIL and AIRL tests."""
    values = {
        "learning_rate": 1e-3,
        "disc_learning_rate": 1e-3,
        "num_generations": 4,
        "max_completion_length": 8,
        "max_steps": 3,
    }
    return fast_config(config_class, output_dir, **{**values, **overrides})


def one_step_grpo_config(output_dir) -> GRPOConfig:
    """One GRPO step, to check that a saved reward model serves `GRPOTrainer`."""
    return fast_config(
        GRPOConfig, output_dir, per_device_train_batch_size=4, num_generations=4, max_completion_length=6, max_steps=1
    )


def colours_sft_checkpoint(directory: Path) -> Path:
    """The SFT starting point of the colours toy task: a tiny model after 40 SFT steps (reverse KL 2.19)."""
    from trl_irl.tiny_models import save_tiny_checkpoint

    base = save_tiny_checkpoint(directory / "base", toy_colors.CORPUS, vocab_size=300, hidden_size=64)
    sft = SFTTrainer(
        model=str(base),
        args=fast_config(SFTConfig, directory / "sft", max_steps=40, per_device_train_batch_size=16, logging_steps=10),
        train_dataset=toy_colors.demonstrations(64),
    )
    sft.train()
    sft.save_model()
    return directory / "sft"


def colours_training_overrides(**overrides) -> dict:
    """The adversarial settings of the colours toy-task tests."""
    values = {"per_device_train_batch_size": 16, "num_generations": 8, "max_completion_length": 6, "logging_steps": 10}
    return {**values, **overrides}


def train_and_check_both_models_learn(trainer, discriminator_label: str = "discriminator") -> None:
    """Train an adversarial trainer and assert that every parameter of the policy and of the discriminator changed."""
    import torch

    policy_before = {name: p.clone() for name, p in trainer.model.named_parameters()}
    disc_before = {name: p.clone() for name, p in trainer.discriminator.model.named_parameters()}
    trainer.train()
    for name, param in trainer.model.named_parameters():
        assert not torch.equal(param, policy_before[name]), f"policy {name} did not change"
    for name, param in trainer.discriminator.model.named_parameters():
        assert not torch.equal(param, disc_before[name]), f"{discriminator_label} {name} did not change"
