"""The cards of the discriminators and reward models: Hub metadata, load examples that run, and what a push uploads."""

import re
from pathlib import Path

import pytest
import torch
from helpers import adversarial_config, record_hub_uploads, record_trainer_pushes
from huggingface_hub import ModelCard

from trl_irl import AIRLConfig, AIRLTrainer, GAILConfig, GAILTrainer


def _python_blocks(card_text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card_text, flags=re.DOTALL)


def _trainer(trainer_name, tmp_path, model_path, dataset, **overrides):
    trainer_class, config_class = (GAILTrainer, GAILConfig) if trainer_name == "gail" else (AIRLTrainer, AIRLConfig)
    return trainer_class(
        model=model_path, args=adversarial_config(config_class, tmp_path, **overrides), train_dataset=dataset
    )


@pytest.mark.parametrize("trainer_name", ["gail", "airl"])
@pytest.mark.parametrize(
    ("disc_type", "level", "auto_class", "pipeline_tag", "scored"),
    [
        ("likelihood_ratio", "sequence", "AutoModelForCausalLM", "text-generation", "token_log_probs"),
        ("likelihood_ratio", "token", "AutoModelForCausalLM", "text-generation", "token_log_probs"),
        ("classifier", "sequence", "AutoModelForSequenceClassification", "text-classification", "logit"),
        ("classifier", "token", "AutoModelForTokenClassification", "token-classification", "token_logits"),
    ],
)
def test_the_saved_card_has_metadata_and_an_example_that_runs(
    tmp_path,
    tiny_model_path,
    prompt_completion_dataset,
    trainer_name,
    disc_type,
    level,
    auto_class,
    pipeline_tag,
    scored,
):
    # The token-level GAIL card used to say "sequence classifier"; the examples pointed at "path/to/..."
    trainer = _trainer(
        trainer_name,
        tmp_path,
        tiny_model_path,
        prompt_completion_dataset,
        disc_type=disc_type,
        disc_level=level,
    )
    trainer.save_model()
    folder = tmp_path / trainer.discriminator_dir
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == pipeline_tag
    assert {"trl-irl", trainer_name} <= set(card.data.tags)
    assert ("reward-model" if trainer_name == "airl" else "discriminator") in card.data.tags
    [example] = _python_blocks(card.content)
    assert f"{auto_class}.from_pretrained" in example and f"subfolder={trainer.discriminator_dir!r}" in example
    namespace = {}
    exec(example, namespace)  # loads from the saved directory, offline, and scores a text
    assert namespace[scored].numel() >= 1


def test_push_to_hub_uploads_the_policy_and_the_discriminator_with_linked_cards(
    tmp_path, tiny_model_path, prompt_completion_dataset, monkeypatch
):
    recorded = record_trainer_pushes(monkeypatch)
    trainer = _trainer(
        "gail",
        tmp_path,
        tiny_model_path,
        prompt_completion_dataset,
        hub_model_id="someone/gail-policy",
        hub_private_repo=True,
        hub_revision="experiment",
    )
    trainer.push_to_hub(dataset_name="someone/demonstrations")
    assert (recorded["repo_id"], recorded["private"], recorded["revision"]) == (
        "someone/gail-policy",
        True,
        "experiment",
    )
    assert {"model.safetensors", "README.md", "discriminator/model.safetensors", "discriminator/README.md"} <= set(
        recorded["files"]
    )
    # The policy's card says where the discriminator is and how to load it from the pushed repository
    assert "subfolder='discriminator'" in recorded["cards"][""]
    assert "from_pretrained('someone/gail-policy', subfolder='discriminator')" in recorded["cards"][""]
    discriminator_card = ModelCard(recorded["cards"]["discriminator"])
    assert discriminator_card.data.datasets == ["someone/demonstrations"]
    assert "from_pretrained('someone/gail-policy', subfolder='discriminator')" in discriminator_card.content


def test_pushes_during_training_carry_the_checkpoint_s_discriminator(
    tmp_path, tiny_model_path, prompt_completion_dataset, monkeypatch
):
    # With `hub_strategy="every_save"`, `Trainer` pushes `output_dir` after each checkpoint, copying only the policy's
    # files there from the checkpoint: the discriminator used to be missing from those pushes
    import concurrent.futures

    import transformers.trainer
    from safetensors.torch import load_file

    pushes = []

    class RecordingHfApi:
        def create_repo(self, repo_id, token=None, private=None, exist_ok=False, **kwargs):
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, path_in_repo=None, **kwargs):
            folder = Path(folder_path)
            files = [
                p
                for p in folder.rglob("*")
                if p.is_file() and not p.relative_to(folder).parts[0].startswith("checkpoint-")
            ]
            discriminator_weights = folder / "discriminator" / "model.safetensors"
            pushes.append(
                {
                    "files": {str(p.relative_to(folder)) for p in files},
                    "card": (folder / "discriminator" / "README.md").read_text()
                    if discriminator_weights.is_file()
                    else "",
                    "weights": load_file(discriminator_weights) if discriminator_weights.is_file() else None,
                }
            )
            done = concurrent.futures.Future()
            done.set_result(None)
            return done

    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: RecordingHfApi())
    trainer = _trainer(
        "gail",
        tmp_path,
        tiny_model_path,
        prompt_completion_dataset,
        push_to_hub=True,
        hub_model_id="someone/gail-policy",
        hub_strategy="every_save",
        save_strategy="steps",
        save_steps=1,
        max_steps=1,
    )
    trainer.train()
    [push] = pushes
    assert {"model.safetensors", "discriminator/model.safetensors", "discriminator/README.md"} <= push["files"]
    # The discriminator's training state stays in the checkpoint; the pushed weights are the trained ones
    assert not any("discriminator_state" in name for name in push["files"])
    trained = {name: param.detach().cpu() for name, param in trainer.discriminator.model.state_dict().items()}
    for name, value in push["weights"].items():
        torch.testing.assert_close(value, trained[name])
    assert "from_pretrained('someone/gail-policy', subfolder='discriminator')" in push["card"]


def test_a_standalone_push_points_its_example_at_its_own_repository(
    tmp_path, tiny_model_path, prompt_completion_dataset, monkeypatch
):
    uploaded = record_hub_uploads(monkeypatch)
    trainer = _trainer("airl", tmp_path, tiny_model_path, prompt_completion_dataset)
    trainer.push_reward_model_to_hub("someone/airl-reward")
    [example] = _python_blocks(uploaded["card"])
    assert "from_pretrained('someone/airl-reward')" in example and "subfolder" not in example


def test_airl_pushes_the_policy_and_its_reward_model_with_linked_cards(
    tmp_path, tiny_model_path, prompt_completion_dataset, monkeypatch
):
    recorded = record_trainer_pushes(monkeypatch)
    trainer = _trainer(
        "airl", tmp_path, tiny_model_path, prompt_completion_dataset, hub_model_id="someone/airl-policy"
    )
    trainer.push_to_hub()
    assert recorded["repo_id"] == "someone/airl-policy"
    assert {"model.safetensors", "README.md", "reward_model/model.safetensors", "reward_model/README.md"} <= set(
        recorded["files"]
    )
    reward_model_card = ModelCard(recorded["cards"]["reward_model"])
    assert {"trl-irl", "airl", "reward-model"} <= set(reward_model_card.data.tags)
    assert "from_pretrained('someone/airl-policy', subfolder='reward_model')" in reward_model_card.content
    assert "subfolder='reward_model'" in recorded["cards"][""]


@pytest.mark.parametrize(
    ("disc_type", "task_type", "scored"),
    [("likelihood_ratio", None, "token_log_probs"), ("classifier", "SEQ_CLS", "logit")],
)
def test_a_lora_discriminator_is_pushed_as_its_adapter_with_a_card_whose_example_loads_it(
    tmp_path, tiny_model_path, prompt_completion_dataset, monkeypatch, disc_type, task_type, scored
):
    # Its card's example used `from_pretrained` on the adapter's folder, which fails ("Should have a `model_type`"),
    # and a push left the card pointing at the local directory
    from peft import LoraConfig

    trainer = GAILTrainer(
        model=tiny_model_path,
        args=adversarial_config(GAILConfig, tmp_path, disc_type=disc_type, hub_model_id="someone/gail-policy"),
        train_dataset=prompt_completion_dataset,
        discriminator_peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type=task_type),
    )
    trainer.save_model()
    [example] = _python_blocks((tmp_path / "discriminator" / "README.md").read_text())
    namespace = {}
    exec(example, namespace)  # loads the base model and the adapter from the saved directory, offline
    assert namespace[scored].numel() >= 1

    recorded = record_trainer_pushes(monkeypatch)
    trainer.push_to_hub()
    discriminator_files = {path for path in recorded["files"] if path.startswith("discriminator/")}
    assert {"discriminator/adapter_model.safetensors", "discriminator/adapter_config.json"} <= discriminator_files
    assert "discriminator/model.safetensors" not in discriminator_files  # the adapter, not a copy of the base model
    for card in (recorded["cards"]["discriminator"], recorded["cards"][""]):
        assert "PeftModel.from_pretrained(base, 'someone/gail-policy', subfolder='discriminator')" in card


@pytest.mark.parametrize("trainer_name", ["weighted_sft", "variance_reward"])
def test_the_other_trainers_push_their_model_with_a_card_naming_the_method(
    tmp_path, tiny_model_path, prompt_completion_dataset, preference_dataset, monkeypatch, trainer_name
):
    from helpers import fast_config

    from trl_irl import VarianceRewardConfig, VarianceRewardTrainer, WeightedSFTConfig, WeightedSFTTrainer

    recorded = record_trainer_pushes(monkeypatch)
    trainer_class, config_class, dataset, tag = {
        "weighted_sft": (WeightedSFTTrainer, WeightedSFTConfig, prompt_completion_dataset, "weighted-sft"),
        "variance_reward": (VarianceRewardTrainer, VarianceRewardConfig, preference_dataset, "variance-reward"),
    }[trainer_name]
    args = fast_config(
        config_class, tmp_path, max_steps=2, hub_model_id=f"someone/{trainer_name}", hub_private_repo=True
    )
    trainer = trainer_class(model=tiny_model_path, args=args, train_dataset=dataset)
    trainer.train()
    trainer.push_to_hub()
    assert (recorded["repo_id"], recorded["private"]) == (f"someone/{trainer_name}", True)
    assert {"model.safetensors", "config.json", "README.md"} <= set(recorded["files"])
    card = ModelCard(recorded["cards"][""])
    assert {"trl-irl", tag} <= set(card.data.tags)
    assert "2403.12017" in card.content  # the paper the method comes from
