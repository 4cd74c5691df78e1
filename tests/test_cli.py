import dataclasses
import json
import shutil

import pytest
import yaml
from helpers import adversarial_config, fake_sft_run, free_port

from trl_irl.benchmark.comparison import ComparisonSettings, run_comparison
from trl_irl.cli import _launch_arguments, main


@pytest.mark.slow
def test_comparison_runs_every_method_and_writes_results(tmp_path):
    settings = ComparisonSettings(
        num_demonstrations=16, sft_steps=4, adversarial_steps=2, eval_every=2, num_eval_prompts=4, hidden_size=32
    )
    results = run_comparison(settings, tmp_path, log=lambda *args: None)
    tempered = {"sft_temperature_0.8", "sft_temperature_0.6"}
    assert set(results["methods"]) == set(settings.methods) | tempered
    # The same checkpoint evaluated at another temperature (the exact arithmetic: test_synthetic.py)
    assert (
        results["methods"]["sft_temperature_0.6"]["final"]["reverse_kl"]
        != results["methods"]["sft"]["final"]["reverse_kl"]
    )
    for method, result in results["methods"].items():
        assert set(result["final"]) >= {
            "reverse_kl",
            "forward_kl",
            "js",
            "invalid",
            "mode_coverage",
            "mean_length",
            "mean_length_ci95",
        }, method
        # Only the adversarial methods have a learned reward to follow (16 demonstrations: one held out)
        has_learned_reward = method not in ("sft", "weighted_sft", "large_sft", "oracle", *tempered)
        assert ({"disc/heldout_acc", "disc/heldout_loss"} <= set(result["final"])) == has_learned_reward, method
        # The likelihood-ratio discriminator (the default) is a language model, evaluated like the policy
        assert ("reverse_kl" in result.get("discriminator_final", {})) == has_learned_reward, method
        assert ("reverse_kl" in (result.get("discriminator_start") or {})) == has_learned_reward, method
    # The adversarial curves continue SFT's
    assert results["methods"]["gail"]["curve"][0]["step"] == 4 + 2
    assert json.loads((tmp_path / "results.json").read_text())["methods"].keys() == results["methods"].keys()


def test_comparison_reuses_an_sft_checkpoint_trained_with_the_same_settings(tmp_path):
    settings = ComparisonSettings(
        num_demonstrations=16, sft_steps=4, eval_every=2, num_eval_prompts=4, hidden_size=32, methods=("sft",)
    )
    first = run_comparison(settings, tmp_path, log=lambda *args: None)
    messages = []
    second = run_comparison(settings, tmp_path, log=messages.append)
    assert second["methods"]["sft"] == first["methods"]["sft"]
    assert any("reusing" in message for message in messages)
    messages.clear()
    run_comparison(ComparisonSettings(**{**vars(settings), "sft_steps": 2}), tmp_path, log=messages.append)
    assert not any("reusing" in message for message in messages)


def _one_adversarial_step_settings(**overrides) -> ComparisonSettings:
    """A comparison small enough for a test: 16 demonstrations, a tiny model, one adversarial step."""
    return ComparisonSettings(
        num_demonstrations=16, adversarial_steps=1, num_eval_prompts=4, hidden_size=32, **overrides
    )


def _record_gail_trainer_calls(monkeypatch) -> list[dict]:
    """The keyword arguments of every `GAILTrainer` the comparison builds, in order."""
    import trl_irl.benchmark.methods as methods

    calls = []

    class RecordingGAILTrainer(methods.GAILTrainer):
        def __init__(self, *args, **kwargs):
            calls.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(methods, "GAILTrainer", RecordingGAILTrainer)
    return calls


def test_comparison_passes_adversarial_settings_to_the_adversarial_trainers_only(tmp_path, monkeypatch):
    calls = _record_gail_trainer_calls(monkeypatch)
    settings = _one_adversarial_step_settings(
        sft_steps=2,
        eval_every=1,
        methods=("gail", "oracle"),
        adversarial_config={"disc_label_smoothing": 0.3},
        # The base model the comparison builds, named through the placeholders a sweep fills in per seed
        discriminator_checkpoint=str(tmp_path / "{num_demonstrations}-{seed}" / ".." / "base"),
    )
    (tmp_path / "16-0").mkdir()
    results = run_comparison(settings, tmp_path, log=lambda *args: None)
    assert calls[0]["args"].disc_label_smoothing == 0.3
    assert calls[0]["discriminator"] == str(tmp_path / "16-0" / ".." / "base")
    assert set(results["methods"]) == {"gail", "oracle"}
    assert results["settings"]["adversarial_config"] == {"disc_label_smoothing": 0.3}


def test_comparison_can_give_the_adversarial_methods_a_larger_sft_model_as_discriminator(tmp_path, monkeypatch):
    from transformers import AutoConfig

    calls = _record_gail_trainer_calls(monkeypatch)
    settings = _one_adversarial_step_settings(
        sft_steps=2, eval_every=1, methods=("gail",), disc_from_large_sft=True, teacher_hidden_size=64
    )
    results = run_comparison(settings, tmp_path, log=lambda *args: None)
    # Trained first because GAIL needs it, though not a row of its own since it was not asked for
    assert calls[0]["discriminator"] == str(tmp_path / "large_sft")
    assert AutoConfig.from_pretrained(tmp_path / "large_sft").hidden_size == 64
    assert AutoConfig.from_pretrained(calls[0]["model"]).hidden_size == 32
    assert set(results["methods"]) == {"gail"}


def test_comparison_can_start_the_policy_from_the_middle_of_sft_and_the_discriminator_from_its_end(
    tmp_path, monkeypatch
):
    import torch
    from transformers import AutoModelForCausalLM

    calls = _record_gail_trainer_calls(monkeypatch)
    settings = _one_adversarial_step_settings(
        sft_steps=4, policy_from_sft_step=2, eval_every=2, methods=("sft", "gail")
    )
    logs = []
    results = run_comparison(settings, tmp_path, log=logs.append)
    assert [(call["model"], call["discriminator"]) for call in calls] == [
        (str(tmp_path / "sft" / "checkpoint-2"), str(tmp_path / "sft"))
    ]
    assert results["policy_start"]["step"] == 2 and results["methods"]["sft"]["final"]["step"] == 4
    middle = AutoModelForCausalLM.from_pretrained(tmp_path / "sft" / "checkpoint-2")
    end = AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    assert any(not torch.equal(a, b) for a, b in zip(middle.parameters(), end.parameters(), strict=True))

    # A later run reuses the SFT run only while its middle checkpoint is there
    run_comparison(settings, tmp_path, log=logs.append)
    assert sum("reusing" in line for line in logs) == 1
    shutil.rmtree(tmp_path / "sft" / "checkpoint-2")
    run_comparison(settings, tmp_path, log=logs.append)
    assert sum("reusing" in line for line in logs) == 1
    assert (tmp_path / "sft" / "checkpoint-2" / "model.safetensors").is_file()

    with pytest.raises(ValueError, match="policy_from_sft_step.*inside the SFT run"):
        run_comparison(dataclasses.replace(settings, policy_from_sft_step=4), tmp_path)


def test_results_table_has_a_row_per_method_and_dashes_where_there_is_no_learned_reward():
    from trl_irl.benchmark.comparison import results_table

    final = {"reverse_kl": 3.0, "forward_kl": 2.0, "js": 0.3, "invalid": 0.5, "mode_coverage": 0.3, "mean_length": 4.0}
    learned = {"reward_fidelity": 0.35, "disc/heldout_acc": 0.53, "disc/heldout_loss": 0.72}
    results = {
        "methods": {
            "sft": {"final": final, "seconds": 107.3},
            "gail": {"final": final | {"reverse_kl": 2.9} | learned, "seconds": 113.0},
        }
    }
    header, _index_name, sft, gail = results_table(results).splitlines()
    assert header.split() == ["reverse_kl", "forward_kl", "js", "invalid", "mode_coverage", "mean_length"] + [
        "reward_fidelity",
        "disc/heldout_acc",
        "disc/heldout_loss",
        "seconds",
    ]
    assert sft.split() == ["sft", "3.000", "2.000", "0.300", "0.500", "0.300", "4.000", "-", "-", "-", "107.3"]
    assert gail.split()[:2] == ["gail", "2.900"] and gail.split()[7:10] == ["0.350", "0.530", "0.720"]


def test_the_demo_s_proxy_agreement_is_spearman_s_over_the_methods_ends():
    from trl_irl.benchmark.comparison import proxy_agreement

    def row(reverse_kl, forward_kl, heldout_nll):
        return {"final": {"reverse_kl": reverse_kl, "forward_kl": forward_kl, "heldout_nll": heldout_nll}}

    methods = {"sft": row(3.0, 1.0, 0.5), "gail": row(2.0, 2.0, 0.6), "oracle": row(1.0, 3.0, 0.7)}
    # The held-out NLL rises as the forward KL does and the reverse KL falls; a temperature row is not a method
    methods["sft_temperature_0.5"] = row(0.1, 9.0, 0.5)
    assert proxy_agreement({"methods": methods}) == {"reverse_kl": -1.0, "forward_kl": 1.0}
    del methods["oracle"]
    assert proxy_agreement({"methods": methods}) == {}  # two methods rank nothing


def test_regime_settings_then_quick_then_overrides():
    rules = ComparisonSettings.for_regime("rules")
    assert (rules.num_hidden_layers, rules.sft_steps, rules.policy_from_sft_step) == (4, 3000, 1500)
    # The policy starts from SFT's middle however long SFT is, unless told otherwise
    quick = ComparisonSettings.for_regime("rules", quick=True, sft_steps=7)
    assert (quick.num_hidden_layers, quick.adversarial_steps, quick.sft_steps, quick.policy_from_sft_step) == (
        4,
        40,
        7,
        3,
    )
    assert ComparisonSettings.for_regime("rules", policy_from_sft_step=None).policy_from_sft_step is None
    assert ComparisonSettings.for_regime("memorise") == ComparisonSettings()
    smoothed = ComparisonSettings.for_regime("rules", adversarial_config={"disc_label_smoothing": 0.2})
    assert smoothed.adversarial_config == {"disc_label_smoothing": 0.2}


@pytest.mark.slow
def test_demo_command_prints_the_table_and_writes_plots(tmp_path, capsys):
    main(
        [
            "demo",
            "--quick",
            "--methods",
            "sft",
            "weighted_sft",
            "--num-demonstrations",
            "16",
            "--output-dir",
            str(tmp_path),
        ]
    )
    printed = capsys.readouterr().out
    assert "reverse_kl" in printed and "weighted_sft" in printed
    assert (tmp_path / "reverse_kl.png").read_bytes().startswith(b"\x89PNG")
    assert "<svg" in (tmp_path / "reverse_kl.svg").read_text()
    assert (tmp_path / "results.json").is_file()


def _write_config(tmp_path, model_path, dataset, num_rows: int, **options) -> str:
    """A YAML config for a 2-step run on `num_rows` rows of `dataset`, written as a JSON Lines file."""
    data = tmp_path / "demonstrations.jsonl"
    dataset.select(range(num_rows)).to_json(data)
    config = {
        "model_name_or_path": model_path,
        "dataset_name": str(data),
        "output_dir": str(tmp_path / "out"),
        "max_steps": 2,
        "bf16": False,
        "report_to": "none",
        "save_strategy": "no",
        **options,
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return str(tmp_path / "config.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "weighted_sft", "gail", "airl", "distillation"])
def test_training_commands_run_from_a_yaml_config(tmp_path, tiny_model_path, prompt_completion_dataset, method):
    import torch

    adversarial = method in ("gail", "airl")
    options = {"num_generations": 4, "max_completion_length": 8} if adversarial else {}
    if method == "distillation":
        # TRL's DistillationTrainer with a teacher of the same tokenizer (here the policy's own checkpoint)
        options = {"teacher_model_name_or_path": tiny_model_path, "max_completion_length": 8}
    config = _write_config(
        tmp_path, tiny_model_path, prompt_completion_dataset, 16, per_device_train_batch_size=8, **options
    )
    main([method, "--config", config, "--learning_rate", "1e-3"])
    assert (tmp_path / "out" / "model.safetensors").is_file()
    # The YAML's values and the command line's override reached the training arguments (a file this test wrote)
    training_args = torch.load(tmp_path / "out" / "training_args.bin", weights_only=False)
    assert (training_args.learning_rate, training_args.max_steps) == (1e-3, 2)
    assert (
        type(training_args).__name__
        == {
            "sft": "SFTConfig",
            "weighted_sft": "WeightedSFTConfig",
            "gail": "GAILConfig",
            "airl": "AIRLConfig",
            "distillation": "DistillationConfig",
        }[method]
    )
    if adversarial:
        discriminator_dir = "discriminator" if method == "gail" else "reward_model"
        assert (tmp_path / "out" / discriminator_dir / "model.safetensors").is_file()
        assert training_args.num_generations == 4


def test_unknown_command_fails_clearly(capsys):
    from trl_irl.cli import TRAINING_METHODS
    from trl_irl.scripts.train import TRAINERS

    with pytest.raises(SystemExit):
        main(["bc"])
    expected = "invalid choice: 'bc' (choose from 'demo', 'evaluate', 'estimate', 'env', 'sft', 'weighted_sft'"
    assert expected in capsys.readouterr().err
    # The command list, kept free of heavy imports, names the methods the training script knows
    assert set(TRAINING_METHODS) == set(TRAINERS)


def test_bad_config_fails_clearly(tmp_path, tiny_model_path):
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({"model_name_or_path": tiny_model_path, "dataset_name": "x", "bf16": False, "not_an_option": 1})
    )
    with pytest.raises(SystemExit, match="not_an_option"):
        main(["gail", "--config", str(tmp_path / "config.yaml")])
    with pytest.raises(SystemExit, match="--num_procs"):
        main(["gail", "--config", str(tmp_path / "config.yaml"), "--num_procs", "2"])


def test_launch_arguments_come_from_the_config_and_the_command_line():
    from accelerate.commands.launch import launch_command_parser

    parser = launch_command_parser()
    from_config = ["--multi_gpu", "True", "--same_network", "False", "--num_processes", "2"]
    launch_args = _launch_arguments("sft", parser, from_config, ["--accelerate_config", "zero2"])
    assert launch_args[:2] == ["--config_file", launch_args[1]] and launch_args[1].endswith("zero2.yaml")
    assert launch_args[2:] == ["--multi_gpu", "--num_processes", "2"]


@pytest.mark.slow
def test_training_failure_is_reported_without_a_launcher_traceback(tmp_path, tiny_model_path):
    (tmp_path / "data.jsonl").write_text('{"question": "no prompt or completion here"}\n')
    config = {"model_name_or_path": tiny_model_path, "dataset_name": str(tmp_path / "data.jsonl"), "bf16": False}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config | {"output_dir": str(tmp_path / "out")}))
    with pytest.raises(SystemExit, match="training failed"):
        main(["sft", "--config", str(tmp_path / "config.yaml")])


@pytest.mark.distributed
def test_accelerate_launch_options_in_the_config_start_several_processes(
    tmp_path, tiny_model_path, prompt_completion_dataset, capfd
):
    config = _write_config(
        tmp_path,
        tiny_model_path,
        prompt_completion_dataset,
        32,
        per_device_train_batch_size=4,
        logging_steps=2,
        # Without it, each process on a machine with no GPU trains alone
        use_cpu=True,
        # accelerate launch options
        multi_gpu=True,
        num_processes=2,
        main_process_port=int(free_port()),
    )
    main(["weighted_sft", "--config", config])
    # 2 steps of 2 processes x 4 examples: half of the 32 examples, where one process would have seen a quarter
    assert "'epoch': '0.5'" in capfd.readouterr().out
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_missing_dataset_fails_clearly(tmp_path, tiny_model_path):
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({"model_name_or_path": tiny_model_path, "output_dir": str(tmp_path), "bf16": False})
    )
    with pytest.raises(SystemExit, match="dataset_name"):
        main(["weighted_sft", "--config", str(tmp_path / "config.yaml")])


def _training_script_arguments(method: str, argv: list[str]):
    from trl_irl.scripts.train import make_parser

    return make_parser(method).parse_args_and_config(argv, fail_with_unknown_args=False)


def _record_trainer(monkeypatch, method: str) -> dict:
    """
    Replace `method`'s trainer in the training script with one that records what it is given (its keyword arguments
    and the checkpoint `train` resumes from) and trains nothing. Returns the record.
    """
    from trl_irl.scripts import train

    received = {}

    class RecordingTrainer:
        def __init__(self, **kwargs):
            received.update(kwargs)

        def train(self, resume_from_checkpoint=None):
            received["resume_from_checkpoint"] = resume_from_checkpoint

        def save_model(self, output_dir):
            pass

    monkeypatch.setitem(train.TRAINERS, method, (train.TRAINERS[method][0], RecordingTrainer))
    return received


def test_training_script_honours_model_dataset_and_resume_options(tmp_path, prompt_completion_dataset, monkeypatch):
    # `trl <method>` options that used to be parsed and then ignored; a recording trainer stands in for the real one
    from trl_irl.scripts import train

    for split, rows in (("train", range(0, 8)), ("test", range(8, 12))):
        prompt_completion_dataset.select(rows).to_json(tmp_path / "data" / f"{split}.jsonl")
    received = _record_trainer(monkeypatch, "weighted_sft")
    arguments = _training_script_arguments(
        "weighted_sft",
        [
            *("--model_name_or_path", "some/model", "--dataset_name", str(tmp_path / "data")),
            *("--output_dir", str(tmp_path / "out"), "--bf16", "False", "--report_to", "none"),
            *("--dtype", "float32", "--model_revision", "v1", "--attn_implementation", "eager"),
            *("--load_in_4bit", "True", "--eval_strategy", "steps", "--resume_from_checkpoint", "some-checkpoint"),
            *("--model_init_kwargs", '{"attn_implementation": "sdpa"}'),
        ],
    )
    train.main("weighted_sft", *arguments)
    assert received["args"].model_init_kwargs == {
        "revision": "v1",
        "trust_remote_code": False,
        "attn_implementation": "sdpa",  # `model_init_kwargs` wins over `ModelConfig`, as in TRL's scripts
        "dtype": "float32",
    }
    assert received["quantization_config"].load_in_4bit
    assert len(received["train_dataset"]) == 8 and len(received["eval_dataset"]) == 4
    assert received["resume_from_checkpoint"] == "some-checkpoint"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--dataset_train_split", "training"], r"`dataset_train_split` is 'training'.*\['train'\]"),
        (["--eval_strategy", "steps"], r"`dataset_test_split` is 'test'.*\['train'\].*eval_strategy: no"),
    ],
)
def test_a_missing_split_is_named(tmp_path, prompt_completion_dataset, options, message):
    from trl_irl.scripts import train

    prompt_completion_dataset.to_json(tmp_path / "data.jsonl")
    arguments = _training_script_arguments(
        "gail",
        ["--model_name_or_path", "m", "--dataset_name", str(tmp_path / "data.jsonl"), "--bf16", "False", *options],
    )
    with pytest.raises(SystemExit, match=message):
        train.load_datasets(arguments[0], arguments[1])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gail", "--config", "missing.yaml"], "`--config` file 'missing.yaml' does not exist"),
        (["sft", "--model_name_or_path", "./no-model", "--dataset_name", "d", "--bf16", "False"], "'./no-model'"),
        (["sft", "--model_name_or_path", "org/model", "--dataset_name", "d.jsonl", "--bf16", "False"], "'d.jsonl'"),
        (
            ["distillation", "--model_name_or_path", "org/model", "--dataset_name", "d", "--bf16", "False"],
            "`teacher_model_name_or_path` is required",
        ),
        (
            ["distillation", "--model_name_or_path", "org/model", "--dataset_name", "d", "--bf16", "False"]
            + ["--teacher_model_name_or_path", "./no-teacher"],
            "'./no-teacher' does not exist",
        ),
    ],
)
def test_missing_files_are_named_before_anything_is_launched(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=message):
        main(argv)


def test_env_prints_the_versions_a_bug_report_needs(capsys):
    import torch
    import trl

    from trl_irl import __version__

    main(["env"])
    printed = capsys.readouterr().out
    assert "trl-irl:" in printed and __version__ in printed
    assert "trl:" in printed and trl.__version__ in printed
    assert torch.__version__ in printed and "GPUs:" in printed
    with pytest.raises(SystemExit):
        main(["env", "--unknown"])


def test_demo_takes_underscored_option_names_as_the_training_commands_do(monkeypatch):
    import trl_irl.benchmark.comparison as comparison

    seen = {}

    def record(settings, output_dir):
        seen.update(settings=settings, output_dir=output_dir)
        raise SystemExit(0)

    monkeypatch.setattr(comparison, "run_comparison", record)
    with pytest.raises(SystemExit):
        main(["demo", "--output_dir", "elsewhere", "--num_demonstrations", "8", "--report_to", "tensorboard"])
    assert seen["output_dir"] == "elsewhere"
    assert seen["settings"].num_demonstrations == 8 and seen["settings"].report_to == "tensorboard"


def test_demo_refuses_a_non_positive_number_of_demonstrations(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--num-demonstrations", "0"])
    assert "must be a positive number, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["--version"]])
def test_help_and_version_answer_without_importing_torch(argv):
    # `trl-irl --help` took 6 to 9 s when the package imported every trainer eagerly; TRL's answers at once
    import subprocess
    import sys

    code = (
        "import sys\nfrom trl_irl.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('torch imported:', 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert "torch imported: False" in result.stdout, result.stdout + result.stderr
    if argv == ["--version"]:
        from trl_irl import __version__

        assert f"trl-irl {__version__}" in result.stdout
    elif argv == ["--help"]:
        assert result.stdout.startswith("usage: trl-irl") and "variance_reward" in result.stdout


def test_method_names_take_hyphens_or_underscores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The hyphenated spelling is the same command, named by its one spelling
    with pytest.raises(SystemExit, match="trl-irl weighted_sft: the `--config` file"):
        main(["weighted-sft", "--config", "missing.yaml"])

    import trl_irl.benchmark.comparison

    chosen = {}

    def record(settings, output_dir):
        chosen["methods"], chosen["report_to"] = settings.methods, settings.report_to
        raise SystemExit("recorded")

    monkeypatch.setattr(trl_irl.benchmark.comparison, "run_comparison", record)
    with pytest.raises(SystemExit, match="recorded"):
        main(["demo", "--methods", "weighted-sft", "gail_token", "--report-to", "tensorboard"])
    assert chosen["methods"] == ("weighted_sft", "gail_token")
    assert chosen["report_to"] == "tensorboard"


@pytest.mark.parametrize("method", ["gail", "airl", "variance_reward"])
def test_discriminator_options_and_the_variance_reward_command_reach_the_trainer(
    tmp_path, prompt_completion_dataset, preference_dataset, monkeypatch, method
):
    from trl_irl.scripts import train

    dataset = preference_dataset if method == "variance_reward" else prompt_completion_dataset
    dataset.to_json(tmp_path / "data.jsonl")
    config_class = train.TRAINERS[method][0]
    received = _record_trainer(monkeypatch, method)
    argv = ["--model_name_or_path", "org/model", "--dataset_name", str(tmp_path / "data.jsonl"), "--bf16", "False"]
    if method != "variance_reward":
        argv += ["--discriminator_model_name_or_path", "org/discriminator", "--discriminator_use_peft", "True"]
        argv += ["--discriminator_lora_r", "4", "--disc_type", "classifier"]
    train.main(method, *_training_script_arguments(method, [*argv, "--output_dir", str(tmp_path / "out")]))
    assert type(received["args"]).__name__ == config_class.__name__
    if method == "variance_reward":
        assert "discriminator" not in received
    else:
        assert received["discriminator"] == "org/discriminator"
        peft_config = received["discriminator_peft_config"]
        assert (peft_config.r, peft_config.task_type) == (4, "SEQ_CLS")  # a classifier's head must train


def test_sft_run_gives_the_policy_its_halfway_checkpoint_and_the_discriminator_its_end(
    tmp_path, prompt_completion_dataset, monkeypatch
):
    from trl_irl.scripts import train

    prompt_completion_dataset.to_json(tmp_path / "data.jsonl")
    run = fake_sft_run(tmp_path / "sft", [1500, 3000], max_steps=3000)
    received = _record_trainer(monkeypatch, "airl")
    argv = ["--sft_run", str(run), "--dataset_name", str(tmp_path / "data.jsonl"), "--bf16", "False"]
    train.main("airl", *_training_script_arguments("airl", [*argv, "--output_dir", str(tmp_path / "out")]))
    assert received["model"] == str(run / "checkpoint-1500")
    assert received["discriminator"] == str(run)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--model_name_or_path", "org/model"], "remove model_name_or_path or `sft_run`"),
        (["--discriminator_model_name_or_path", "org/d"], "remove discriminator_model_name_or_path or `sft_run`"),
        (["--sft_run_policy_at", "1.5"], "`policy_at`"),
    ],
)
def test_sft_run_conflicts_are_named_before_anything_is_launched(tmp_path, options, message):
    run = fake_sft_run(tmp_path / "sft", [1500, 3000], max_steps=3000)
    with pytest.raises(SystemExit, match=message):
        main(["gail", "--sft_run", str(run), "--dataset_name", "d", "--bf16", "False", *options])


def test_an_sft_run_without_an_earlier_checkpoint_is_refused_before_anything_is_launched(tmp_path):
    run = fake_sft_run(tmp_path / "sft", [3000], max_steps=3000)
    with pytest.raises(SystemExit, match=r"trl-irl gail: `sft_run`: .*no checkpoint before.*save_steps"):
        main(["gail", "--sft_run", str(run), "--dataset_name", "d", "--bf16", "False"])


def test_plots_without_matplotlib_say_which_extra_to_install(monkeypatch):
    import sys

    from trl_irl.plots import line_chart

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"trl-irl\[evaluation\]"):
        line_chart({"a": [(1, 1.0)]}, "x", "y", "unused")


def test_a_dataset_mixture_replaces_dataset_name(tmp_path, prompt_completion_dataset, monkeypatch):
    # TRL's `datasets:` section (DatasetMixtureConfig), with a test split carved out for evaluation
    from trl_irl.scripts import train

    prompt_completion_dataset.to_json(tmp_path / "first.jsonl")
    prompt_completion_dataset.select(range(16)).to_json(tmp_path / "second.jsonl")
    config = {
        "model_name_or_path": "org/model",
        "output_dir": str(tmp_path / "out"),
        "bf16": False,
        "eval_strategy": "steps",
        "datasets": [
            {"path": "json", "data_files": str(tmp_path / "first.jsonl")},
            {"path": "json", "data_files": str(tmp_path / "second.jsonl")},
        ],
        "test_split_size": 0.25,
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    received = _record_trainer(monkeypatch, "gail")
    train.main("gail", *_training_script_arguments("gail", ["--config", str(tmp_path / "config.yaml")]))
    assert (len(received["train_dataset"]), len(received["eval_dataset"])) == (60, 20)  # 64 + 16 rows, a quarter held


def test_a_trl_grpo_config_s_reward_model_is_named_as_not_applying(tmp_path, tiny_model_path):
    # `trl grpo` configs can carry a reward model; GAIL learns its reward, so a config brought over must say so rather
    # than fail as unknown accelerate options
    config = {
        "model_name_or_path": tiny_model_path,
        "dataset_name": str(tmp_path / "data.jsonl"),
        "bf16": False,
        "reward_model_name_or_path": tiny_model_path,
    }
    (tmp_path / "data.jsonl").write_text('{"prompt": "Say hi:", "completion": " hi"}\n')
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="`trl grpo` options for a given reward.*`reward_funcs`"):
        main(["gail", "--config", str(tmp_path / "config.yaml")])


@pytest.mark.parametrize(
    ("name", "message"),
    [("accuracy_rewards", "is neither one of TRL's rewards"), ("no_such_module.checker", "cannot be imported")],
)
def test_a_reward_beside_the_discriminator_that_cannot_be_found_is_named_before_launch(
    tmp_path, tiny_model_path, monkeypatch, name, message
):
    (tmp_path / "data.jsonl").write_text('{"prompt": "Say hi:", "completion": " hi"}\n')
    config = {"model_name_or_path": tiny_model_path, "dataset_name": str(tmp_path / "data.jsonl"), "bf16": False}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config | {"reward_funcs": [name]}))
    monkeypatch.setattr("accelerate.commands.launch.launch_command", lambda args: pytest.fail("launched"))
    with pytest.raises(SystemExit, match=f"`reward_funcs`: {name!r} {message}"):
        main(["gail", "--config", str(tmp_path / "config.yaml")])


def test_trl_s_named_rewards_and_dotted_paths_resolve_as_trl_grpo_resolves_them(tmp_path, monkeypatch):
    from trl.rewards import think_format_reward

    from trl_irl.scripts import train

    (tmp_path / "my_rewards.py").write_text(
        "def checker(completions, **kwargs):\n    return [1.0] * len(completions)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    think, checker = train.load_reward_funcs(["think_format_reward", "my_rewards.checker"])
    assert think is think_format_reward and checker(["a", "b"]) == [1.0, 1.0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("learning_rate: [0.1, 0.2]", r"`learning_rate: \[0.1, 0.2\]` is of type list, and the field takes float"),
        ("max_steps: true", "`max_steps: True` is of type bool, and the field takes int"),
        ("max_steps: null", "`max_steps: None` is of type null"),
        ("num_generations: 2.5", r"`num_generations: 2.5` is of type float, and the field takes int \| None"),
        ("lora_target_modules: 5", r"`lora_target_modules: 5` is of type int, and the field takes list\[str\]"),
        ("disc_init_kwargs: [1]", "`disc_init_kwargs: \\[1\\]` is of type list"),
        ("reward_weights: {a: 1}", "`reward_weights: {'a': 1}` is of type dict"),
    ],
)
def test_a_yaml_value_of_the_wrong_kind_is_refused_before_anything_is_launched(
    tmp_path, tiny_model_path, monkeypatch, line, message
):
    # TRL's parser makes YAML values argparse defaults: text goes through each option's type, other values do not
    import accelerate.commands.launch

    monkeypatch.setattr(accelerate.commands.launch, "launch_command", lambda args: pytest.fail("launched"))
    config = f"model_name_or_path: {tiny_model_path}\ndataset_name: {tmp_path}\nbf16: false\n{line}\n"
    (tmp_path / "config.yaml").write_text(config)
    with pytest.raises(SystemExit, match=f"config.yaml', {message}.*Nothing was launched"):
        main(["gail", "--config", str(tmp_path / "config.yaml")])


def test_yaml_values_of_the_right_kind_pass_the_type_check(tmp_path):
    from trl_irl.scripts.launch_checks import check_config_types
    from trl_irl.scripts.train import make_parser

    config = {
        "learning_rate": 1e-5,
        "max_steps": 10,
        "save_steps": 0.5,
        "warmup_steps": 0.1,
        "bf16": False,
        "fsdp": True,  # accepted by `TrainingArguments` beside its annotated `str`
        "report_to": ["none"],
        "reward_weights": [1, 2.5],
        "model_init_kwargs": {"dtype": "float32"},
        "max_completion_length": None,
        "lr_scheduler_type": "cosine",
        "lora_target_modules": ["q_proj", "v_proj"],
        "num_processes": 2,  # an `accelerate launch` option: not a field, left to the launcher
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    check_config_types("gail", tmp_path / "config.yaml", make_parser("gail").dataclass_types)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], {"regime": "memorise", "seed": 0, "num_demonstrations": 64}),
        (["--regime", "rules", "--seed", "3"], {"regime": "rules", "seed": 3, "num_demonstrations": 2048}),
        (
            ["--regime", "distil", "--seed", "1", "--num-demonstrations", "512"],
            {
                "regime": "distil",
                "seed": 1,
                "num_demonstrations": 512,
                "methods": ("sft", "gail", "oracle", "distillation"),
            },
        ),
    ],
)
def test_demo_runs_the_regime_and_seed_it_is_given(monkeypatch, argv, expected):
    import trl_irl.benchmark.comparison as comparison

    seen = {}

    def record(settings, output_dir):
        seen["settings"] = settings
        raise SystemExit("recorded")

    monkeypatch.setattr(comparison, "run_comparison", record)
    with pytest.raises(SystemExit, match="recorded"):
        main(["demo", *argv])
    settings = seen["settings"]
    for field, value in expected.items():
        assert getattr(settings, field) == value, field
    # Each regime's settings are its own, not the default's with a name changed
    assert settings == comparison.ComparisonSettings.for_regime(
        expected["regime"], seed=expected["seed"], num_demonstrations=expected["num_demonstrations"], report_to="none"
    )


def test_comparison_keeps_airl_s_reward_model_for_reranking(tmp_path):
    from transformers import AutoModelForCausalLM

    settings = _one_adversarial_step_settings(sft_steps=2, eval_every=1, methods=("sft", "airl"))
    run_comparison(settings, tmp_path, log=lambda *args: None)
    reward_model = tmp_path / "airl" / "reward_model"
    # The likelihood-ratio AIRL's f_theta = log q_phi: a causal LM, loadable on its own
    assert (reward_model / "README.md").is_file()
    assert AutoModelForCausalLM.from_pretrained(reward_model).config.hidden_size == 32


def test_estimate_prints_the_memory_a_gail_config_needs_before_loading_weights(tmp_path, tiny_model_path, capsys):
    config = tmp_path / "config.yaml"
    # The YAML a training run takes, bf16 as on a GPU (the machine running the estimate need not have one)
    config.write_text(
        yaml.safe_dump(
            {"model_name_or_path": tiny_model_path, "dataset_name": "unused.jsonl", "bf16": True, "use_peft": True}
        )
    )
    main(
        ["estimate", "gail", "--config", str(config), "--max_prompt_length", "16", "--disc_shares_policy_base", "true"]
    )
    printed = capsys.readouterr().out
    assert "policy weights" in printed and "GiB per process" in printed
    assert "reference model weights" not in printed  # a LoRA policy's reference is its adapter switched off
    config.write_text(yaml.safe_dump({"dataset_name": "unused.jsonl"}))
    with pytest.raises(SystemExit):
        main(["estimate", "gail", "--config", str(config)])
    assert "model_name_or_path" in capsys.readouterr().err


def _without_chat_template(tiny_model_path, directory):
    import json

    shutil.copytree(tiny_model_path, directory)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "chat_template.jinja").unlink(missing_ok=True)
    return directory


def test_what_can_be_checked_without_a_model_is_checked_before_the_launch(
    tmp_path, monkeypatch, tiny_model_path, conversational_dataset
):
    import torch

    monkeypatch.chdir(tmp_path)
    launched = []
    monkeypatch.setattr("accelerate.commands.launch.launch_command", launched.append)
    cpu = ["--bf16", "False", "--use_cpu", "True"]
    base = ["gail", "--model_name_or_path", tiny_model_path, "--dataset_name", "d", *cpu]
    with pytest.raises(SystemExit, match="`discriminator_model_name_or_path` './no-disc' does not exist"):
        main([*base, "--discriminator_model_name_or_path", "./no-disc"])
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit, match="`output_dir` 'a-file' is a file"):
        main([*base, "--output_dir", "a-file"])
    conversational_dataset.to_json(tmp_path / "conversations.jsonl")
    no_template = str(_without_chat_template(tiny_model_path, tmp_path / "no-template"))
    with pytest.raises(SystemExit, match="holds conversations, but the tokenizer of `model_name_or_path`"):
        main(["gail", "--model_name_or_path", no_template, "--dataset_name", "conversations.jsonl", *cpu])
    if not torch.cuda.is_available():
        # `TrainingArguments`' own check, without a traceback and with the other way out
        with pytest.raises(SystemExit, match="bf16.*or set `bf16: false`"):
            main(["gail", "--model_name_or_path", tiny_model_path, "--dataset_name", "d"])
    assert launched == []


def test_conversations_without_a_chat_template_are_refused_by_the_trainer(
    tmp_path, tiny_model_path, conversational_dataset
):
    from transformers import AutoTokenizer

    from trl_irl import GAILConfig, GAILTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="`processing_class`, or the model's own\\) has no chat template"):
        GAILTrainer(
            model=tiny_model_path,
            args=adversarial_config(GAILConfig, tmp_path),
            train_dataset=conversational_dataset,
            processing_class=tokenizer,
        )
