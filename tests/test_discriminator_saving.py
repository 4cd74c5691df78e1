"""trl_irl/trainer/discriminator_saving.py: what GAIL and AIRL save, resume from and publish of their discriminator."""

from pathlib import Path

import pytest
import torch
from helpers import adversarial_config, record_hub_uploads
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_irl import AIRLConfig, AIRLTrainer, GAILConfig, GAILTrainer


def _config(tmp_path, **overrides) -> GAILConfig:
    return adversarial_config(GAILConfig, tmp_path, **overrides)


def test_save_model_writes_a_standalone_discriminator(tmp_path, tiny_model_path, prompt_completion_dataset):
    trainer = GAILTrainer(
        model=tiny_model_path,
        args=_config(tmp_path, max_steps=1, disc_type="classifier"),
        train_dataset=prompt_completion_dataset,
    )
    trainer.train()
    trainer.save_model()
    trainer.create_model_card()

    directory = tmp_path / "discriminator"
    reloaded = AutoModelForSequenceClassification.from_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    texts = ["Count from 1 by 1, 3 numbers: 1 2 3", "Count from 2 by 1, 3 numbers: 2 3 4 5"]
    with torch.no_grad():
        logits = reloaded(**tokenizer(texts, padding=True, return_tensors="pt")).logits[:, 0]
    torch.testing.assert_close(logits, trainer.discriminator.logits(texts))
    assert "expert-is-high" in (directory / "README.md").read_text()
    card = (tmp_path / "README.md").read_text()
    assert "1606.03476" in card and "2403.12017" in card and "GAIL" in card


def test_a_save_that_fails_part_way_names_the_file_and_resuming_skips_its_checkpoint(
    tmp_path, tiny_model_path, prompt_completion_dataset, monkeypatch, caplog
):
    import trl_irl.discriminator.checkpoint as checkpoint_module

    original = checkpoint_module.torch.save

    def disk_full_in_checkpoint_4(state, path, *args, **kwargs):
        if "checkpoint-4" in str(path) and str(path).endswith("discriminator_state.pt"):
            Path(path).write_bytes(b"PK\x03\x04 half")  # what a full disk leaves, and torch's message names nothing
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")
        return original(state, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_full_in_checkpoint_4)
    config = _config(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    trainer = GAILTrainer(model=tiny_model_path, args=config, train_dataset=prompt_completion_dataset)
    state_file = tmp_path / "checkpoint-4" / "discriminator" / "discriminator_state.pt"
    with pytest.raises(OSError, match=f"Writing the discriminator's training state to {state_file} failed"):
        trainer.train()
    assert not (tmp_path / "checkpoint-4" / "trainer_state.json").exists()  # not marked complete
    monkeypatch.setattr(checkpoint_module.torch, "save", original)
    resumed = GAILTrainer(model=tiny_model_path, args=config, train_dataset=prompt_completion_dataset)
    with caplog.at_level("WARNING"):
        resumed.train(resume_from_checkpoint=True)
    assert resumed.discriminator_reward.num_generations_seen == 4  # from checkpoint-2, then 2 more


def test_checkpoint_state_is_complete_before_it_is_marked_complete(
    tmp_path, tiny_model_path, prompt_completion_dataset, monkeypatch
):
    # `trainer_state.json` is what marks a checkpoint complete, and `save_total_limit` deletes old checkpoints
    # right after it: the discriminator's state must already be there
    from transformers import TrainerState

    original = TrainerState.save_to_json
    seen = []

    def check_then_save(state, path):
        seen.append((Path(path).parent / "discriminator" / "discriminator_state.pt").is_file())
        return original(state, path)

    monkeypatch.setattr(TrainerState, "save_to_json", check_then_save)
    config = _config(tmp_path, max_steps=2, save_strategy="steps", save_steps=1, save_total_limit=1)
    GAILTrainer(model=tiny_model_path, args=config, train_dataset=prompt_completion_dataset).train()
    assert seen == [True, True]


def test_resuming_with_other_discriminator_settings_says_which_it_takes(
    tmp_path, tiny_model_path, prompt_completion_dataset, caplog
):
    config = _config(tmp_path, max_steps=1, save_strategy="steps", save_steps=1)
    GAILTrainer(model=tiny_model_path, args=config, train_dataset=prompt_completion_dataset).train()
    changed = _config(tmp_path, max_steps=2, save_strategy="no", disc_level="token", divergence="reverse_kl")
    trainer = GAILTrainer(model=tiny_model_path, args=changed, train_dataset=prompt_completion_dataset)
    with caplog.at_level("WARNING", logger="trl_irl.trainer.discriminator_saving"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    assert "`disc_level` 'sequence' -> 'token'" in caplog.text
    assert "`divergence` 'js' -> 'reverse_kl'" in caplog.text
    caplog.clear()
    same = _config(tmp_path, max_steps=2, save_strategy="no")
    trainer = GAILTrainer(model=tiny_model_path, args=same, train_dataset=prompt_completion_dataset)
    with caplog.at_level("WARNING", logger="trl_irl.trainer.discriminator_saving"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    assert "other discriminator settings" not in caplog.text


def test_resume_from_a_checkpoint_without_discriminator_fails(tmp_path, tiny_model_path, prompt_completion_dataset):
    (tmp_path / "checkpoint-1").mkdir()
    trainer = GAILTrainer(model=tiny_model_path, args=_config(tmp_path), train_dataset=prompt_completion_dataset)
    with pytest.raises(FileNotFoundError, match="discriminator"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))


@pytest.mark.parametrize(
    ("trainer_class", "config_class", "push", "card_title"),
    [
        (GAILTrainer, GAILConfig, "push_discriminator_to_hub", "expert-is-high"),
        (
            AIRLTrainer,
            AIRLConfig,
            "push_reward_model_to_hub",
            "Reward model learned by adversarial inverse reinforcement learning",
        ),
    ],
)
def test_the_discriminator_is_pushed_to_its_own_repository_with_its_card(
    tmp_path, tiny_model_path, prompt_completion_dataset, monkeypatch, trainer_class, config_class, push, card_title
):
    uploaded = record_hub_uploads(monkeypatch)
    args = adversarial_config(config_class, tmp_path, hub_private_repo=True)
    trainer = trainer_class(model=tiny_model_path, args=args, train_dataset=prompt_completion_dataset)
    assert getattr(trainer, push)("someone/discriminator").endswith("/commit/0")
    assert uploaded["repo_id"] == "someone/discriminator"
    assert uploaded["private"] is True  # as `push_to_hub` does with `hub_private_repo`
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json"} <= set(uploaded["files"])
    assert card_title in uploaded["card"]
    getattr(trainer, push)("someone/discriminator", private=False)
    assert uploaded["private"] is False  # the argument before the config
