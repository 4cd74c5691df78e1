"""Every config of examples/ runs through the `trl-irl` command: the recipe end to end (SFT saving halfway, then GAIL
from that run's two checkpoints), with the model, dataset and run length replaced by tiny local ones."""

from pathlib import Path

import pytest
import torch
import yaml

from trl_irl.cli import main


EXAMPLES = Path(__file__).parent.parent / "examples"
# What each test replaces, and so what every example must name (a Hub model and dataset, a run length)
REPLACED = {
    "recipe_sft.yaml": ("model_name_or_path", "dataset_name", "output_dir"),
    "recipe_gail.yaml": ("sft_run",),
    "larger_sft.yaml": ("model_name_or_path", "dataset_name", "output_dir"),
    "distillation_from_larger_sft.yaml": ("model_name_or_path", "teacher_model_name_or_path", "dataset_name"),
    "gail_larger_discriminator.yaml": ("model_name_or_path", "discriminator_model_name_or_path", "dataset_name"),
    "gail_with_verifier.yaml": (
        "model_name_or_path",
        "discriminator_model_name_or_path",
        "dataset_name",
        "output_dir",
    ),
    "evaluate.yaml": ("models", "dataset_name", "judge_model_name_or_path", "classifier_model_name_or_path", "output"),
}


def _local_config(name: str, directory: Path, **replacements) -> str:
    config = yaml.safe_load((EXAMPLES / name).read_text())
    assert set(REPLACED[name]) <= set(config), f"{name} no longer sets {REPLACED[name]}"
    path = directory / name
    path.write_text(yaml.safe_dump(config | replacements))
    return str(path)


def test_every_example_is_tested():
    assert {path.name for path in EXAMPLES.glob("*.yaml")} == set(REPLACED)


@pytest.mark.slow
def test_the_recipe_runs_end_to_end_from_the_examples(tmp_path, tiny_model_path, prompt_completion_dataset):
    data = tmp_path / "demonstrations.jsonl"
    prompt_completion_dataset.select(range(16)).to_json(data)
    local = {"dataset_name": str(data), "report_to": "none"}
    sft_run = tmp_path / "sft-model"
    # One epoch of 16 rows in batches of 8: two steps, and the halfway `save_steps: 0.5` saves checkpoint-1
    sft_config = _local_config(
        "recipe_sft.yaml", tmp_path, model_name_or_path=tiny_model_path, output_dir=str(sft_run), **local
    )
    main(["sft", "--config", sft_config, "--bf16", "false"])
    assert (sft_run / "checkpoint-1" / "trainer_state.json").is_file() and (sft_run / "model.safetensors").is_file()

    gail_config = _local_config(
        "recipe_gail.yaml", tmp_path, sft_run=str(sft_run), output_dir=str(tmp_path / "gail-model"), **local
    )
    main(
        ["gail", "--config", gail_config, "--bf16", "false", "--max_steps", "2", "--num_generations", "4"]
        + ["--max_completion_length", "8", "--per_device_train_batch_size", "8"]
    )
    assert (tmp_path / "gail-model" / "discriminator" / "model.safetensors").is_file()
    training_args = torch.load(tmp_path / "gail-model" / "training_args.bin", weights_only=False)
    assert type(training_args).__name__ == "GAILConfig" and training_args.max_steps == 2


def test_the_gail_examples_use_the_settings_the_benchmark_measured():
    # The settings that do not depend on the model's size; learning rates do, and the examples say so
    from trl_irl.benchmark.settings import ComparisonSettings

    for name, regime in (("gail_larger_discriminator.yaml", "distil"), ("recipe_gail.yaml", "rules")):
        config = yaml.safe_load((EXAMPLES / name).read_text())
        measured = ComparisonSettings.for_regime(regime)
        assert config["beta"] == measured.adversarial_kl_coef, name
        assert config["disc_warmup_generations"] == measured.disc_warmup_generations, name
        assert config["num_generations"] == 8, name  # every comparison's GRPO group (benchmark/methods.py)
        assert "disc_updates_per_generation" not in config, name  # the trainers' default, as measured


@pytest.mark.slow
def test_the_larger_model_recipe_runs_from_the_examples(tmp_path, tiny_model_path, prompt_completion_dataset):
    # The larger model is the tiny model again here: what is tested is that each config runs as written
    data = tmp_path / "demonstrations.jsonl"
    prompt_completion_dataset.select(range(16)).to_json(data)
    local = {"dataset_name": str(data), "report_to": "none"}
    larger = tmp_path / "larger-sft-model"
    config = _local_config(
        "larger_sft.yaml", tmp_path, model_name_or_path=tiny_model_path, output_dir=str(larger), **local
    )
    main(["sft", "--config", config, "--bf16", "false", "--max_steps", "2"])
    assert (larger / "model.safetensors").is_file()
    short = ["--bf16", "false", "--max_steps", "2", "--max_completion_length", "8"]
    for name, method, model_key in (
        ("distillation_from_larger_sft.yaml", "distillation", "teacher_model_name_or_path"),
        ("gail_larger_discriminator.yaml", "gail", "discriminator_model_name_or_path"),
    ):
        output_dir = tmp_path / method
        config = _local_config(
            name,
            tmp_path,
            model_name_or_path=tiny_model_path,
            output_dir=str(output_dir),
            **{model_key: str(larger)},
            **local,
        )
        main([method, "--config", config, *short, "--per_device_train_batch_size", "8"])
        training_args = torch.load(output_dir / "training_args.bin", weights_only=False)
        assert getattr(training_args, "teacher_model_name_or_path", str(larger)) == str(larger)
        assert training_args.max_steps == 2 and (output_dir / "model.safetensors").is_file()


@pytest.mark.slow
def test_the_verifier_beside_the_discriminator_runs_from_its_example(
    tmp_path, tiny_model_path, prompt_completion_dataset, capfd, monkeypatch
):
    # From the repository's root, as the example says, so that its dotted `reward_funcs` path imports
    monkeypatch.chdir(EXAMPLES.parent)
    data = tmp_path / "demonstrations.jsonl"
    prompt_completion_dataset.select(range(16)).to_json(data)
    output_dir = tmp_path / "gail-verifier-model"
    config = _local_config(
        "gail_with_verifier.yaml",
        tmp_path,
        model_name_or_path=tiny_model_path,
        discriminator_model_name_or_path=tiny_model_path,
        dataset_name=str(data),
        output_dir=str(output_dir),
    )
    main(["gail", "--config", config, "--bf16", "false", "--max_steps", "2", "--max_completion_length", "8"])
    assert (output_dir / "model.safetensors").is_file()
    # The training process logged the checker's reward beside the discriminator's
    logged = capfd.readouterr()
    assert "rewards/checker/mean" in logged.out + logged.err
    assert "rewards/discriminator/mean" in logged.out + logged.err


def test_the_evaluation_runs_from_its_example(tmp_path, tiny_model_path, prompt_completion_dataset):
    import json

    heldout = tmp_path / "heldout.jsonl"
    prompt_completion_dataset.select(range(8)).to_json(heldout)
    config = yaml.safe_load((EXAMPLES / "evaluate.yaml").read_text())
    local = _local_config(
        "evaluate.yaml",
        tmp_path,
        models=[f"{entry.split('=')[0]}={tiny_model_path}" for entry in config["models"]],
        dataset_name=str(heldout),
        judge_model_name_or_path=tiny_model_path,
        classifier_model_name_or_path=tiny_model_path,
        output=str(tmp_path / "evaluation.json"),
    )
    main(["evaluate", "--config", local, "--max_new_tokens", "6", "--temperatures", "1.0", "0.7"])
    record = json.loads((tmp_path / "evaluation.json").read_text())
    assert list(record["models"]) == ["sft", "distillation", "gail"]  # SFT first: the reference
    # Each model against SFT, by held-out NLL and by the judge's reverse KL
    compared = [
        (comparison["method"], comparison["reference"], comparison["metric"]) for comparison in record["comparisons"]
    ]
    assert compared == [
        ("distillation", "sft", "heldout_nll"),
        ("gail", "sft", "heldout_nll"),
        ("distillation", "sft", "judge_reverse_kl"),
        ("gail", "sft", "judge_reverse_kl"),
    ]
