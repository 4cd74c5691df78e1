import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import free_port
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


# Every test here launches two processes
pytestmark = pytest.mark.distributed


def _torchrun() -> list[str]:
    """`torchrun` with two processes, on a port that is free now (tests may run side by side)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port()]


SCRIPT = Path(__file__).parent / "distributed" / "train_weighted_sft.py"


def _run(command: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_two_processes_match_one_process(tmp_path, tiny_model_path, prompt_completion_dataset):
    # Eight demonstrations and one SGD step: two processes with four each see the same eight as one process with
    # eight, so with the token count averaged across processes their update must be the single-process update
    data_path = tmp_path / "demonstrations.json"
    prompt_completion_dataset.select(range(8)).to_json(data_path)

    two = tmp_path / "two-processes"
    two.mkdir()
    torchrun = _torchrun()
    _run([*torchrun, str(SCRIPT), tiny_model_path, str(data_path), str(two), "4"], cwd=tmp_path)
    one = tmp_path / "one-process"
    one.mkdir()
    _run([sys.executable, str(SCRIPT), tiny_model_path, str(data_path), str(one), "8"], cwd=tmp_path)

    rank0, rank1 = torch.load(two / "rank0.pt"), torch.load(two / "rank1.pt")
    single = torch.load(one / "rank0.pt")
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert single["world_size"] == 1
    initial = dict(AutoModelForCausalLM.from_pretrained(tiny_model_path).named_parameters())
    for name, param in single["parameters"].items():
        assert not torch.equal(param, initial[name]), f"{name} did not train"
        assert torch.equal(rank0["parameters"][name], rank1["parameters"][name]), f"{name} differs across processes"
        torch.testing.assert_close(rank0["parameters"][name], param, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("trainer_name", "level", "pretraining_steps", "shares_policy_base"),
    [
        ("gail", "sequence", 0, False),
        ("gail", "token", 0, False),
        ("airl", "sequence", 0, False),
        ("gail", "sequence", 3, False),
        # The discriminator as a second adapter on the DDP-wrapped LoRA policy
        ("gail", "sequence", 3, True),
    ],
)
def test_adversarial_replicas_stay_identical_across_two_processes(
    tmp_path, tiny_model_path, prompt_completion_dataset, trainer_name, level, pretraining_steps, shares_policy_base
):
    # Each process generates for its own prompts and updates its own discriminator replica: the heads start from
    # process 0's and the gradients are averaged, so the replicas must agree after training
    data_path = tmp_path / "demonstrations.json"
    prompt_completion_dataset.select(range(16)).to_json(data_path)
    torchrun = _torchrun()
    _run(
        [
            *torchrun,
            str(Path(__file__).parent / "distributed" / "train_gail.py"),
            tiny_model_path,
            str(data_path),
            str(tmp_path),
            level,
            trainer_name,
            # steps, resume from, replay buffer, pre-training steps, sharded, shared base
            *("2", "", "0", str(pretraining_steps), "0", str(int(shares_policy_base))),
        ],
        cwd=tmp_path,
    )

    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert rank0["world_size"] == rank1["world_size"] == 2
    for name, param in rank0["initial_discriminator"].items():
        assert torch.equal(param, rank1["initial_discriminator"][name]), f"discriminator {name} started differently"
    for name, param in rank0["discriminator"].items():
        assert torch.equal(param, rank1["discriminator"][name]), f"discriminator {name} differs across processes"
        assert not torch.equal(param, rank0["initial_discriminator"][name]), f"discriminator {name} did not train"
    for name, param in rank0["policy"].items():
        assert torch.equal(param, rank1["policy"][name]), f"policy {name} differs across processes"


# replay buffer, pre-training steps, sharded, the discriminator a second adapter on the LoRA policy
@pytest.mark.parametrize("extra", [["0"], ["8"], ["0", "0", "0", "1"]], ids=["plain", "replay", "shared_base"])
def test_adversarial_resume_on_two_processes_ends_where_the_uninterrupted_run_does(
    tmp_path, tiny_model_path, prompt_completion_dataset, extra
):
    # Each process draws its own demonstrations, keeps its own replay buffer (of its own completions) and restores
    # its own random state: both must resume exactly. Before each process saved its own, process 1 resumed with
    # process 0's buffer and random state. Sharing the policy's base, the discriminator's adapter is restored into
    # the DDP-wrapped policy model.
    data_path = tmp_path / "demonstrations.json"
    prompt_completion_dataset.select(range(16)).to_json(data_path)
    torchrun = _torchrun()
    script = [str(Path(__file__).parent / "distributed" / "train_gail.py"), tiny_model_path, str(data_path)]
    options = ["sequence", "gail", "4"]
    _run([*torchrun, *script, str(tmp_path), *options, "", *extra], cwd=tmp_path)
    uninterrupted = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    checkpoint = tmp_path / "checkpoint-2"
    assert (checkpoint / "discriminator" / "discriminator_state_process1.pt").is_file()
    _run([*torchrun, *script, str(tmp_path), *options, str(checkpoint), *extra], cwd=tmp_path)
    resumed = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]

    for rank in (0, 1):
        for model in ("policy", "discriminator"):
            for name, param in uninterrupted[rank][model].items():
                torch.testing.assert_close(resumed[rank][model][name], param, msg=f"rank {rank} {model} {name}")


def test_a_replica_loaded_on_the_meta_device_is_filled_from_process_0(tmp_path, tiny_model_path):
    # FSDP's ram-efficient loading leaves every process but the first on the meta device, where `.to(device)` failed
    # ("Cannot copy out of meta tensor")
    torchrun = _torchrun()
    script = Path(__file__).parent / "distributed" / "meta_discriminator.py"
    _run([*torchrun, str(script), tiny_model_path, str(tmp_path)], cwd=tmp_path)
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for moment in ("before", "after"):  # loaded alike, then stepped alike
        assert torch.isfinite(rank1[moment]).all()
        torch.testing.assert_close(rank1[moment], rank0[moment])
    assert not torch.equal(rank0["after"], rank0["before"])


@pytest.mark.parametrize(
    ("disc_type", "tied"), [("likelihood_ratio", False), ("likelihood_ratio", True), ("classifier", False)]
)
def test_a_sharded_discriminator_steps_saves_and_resumes_as_a_replicated_one(
    tmp_path, tiny_model_path, disc_type, tied
):
    # FSDP2 on a CPU mesh: each process holds a slice of each weight, and three updates on each process's own batch
    # must give what the replicated form (gradients all-reduced by hand) gives; saving gathers the full weights, and a
    # discriminator restored from the save after two updates takes the third as the uninterrupted one did. Tied:
    # the head shares the input embeddings, as in most small checkpoints, and is written once
    if tied:
        tiny_model_path = _tied_checkpoint(tiny_model_path, tmp_path / "tied")
    script = Path(__file__).parent / "distributed" / "sharded_discriminator.py"
    for mode in ("replicated", "sharded"):
        torchrun = _torchrun()
        _run([*torchrun, str(script), tiny_model_path, str(tmp_path), disc_type, mode], cwd=tmp_path)
    results = {
        mode: [torch.load(tmp_path / f"{mode}-rank{rank}.pt") for rank in (0, 1)] for mode in ("replicated", "sharded")
    }
    for rank in (0, 1):
        sharded, replicated = results["sharded"][rank], results["replicated"][rank]
        assert sharded["sliced"]
        assert sharded["stats"][2]["loss"] < sharded["stats"][0]["loss"]  # it learns
        for update in range(3):
            for name in ("loss", "acc", "grad_norm"):
                assert sharded["stats"][update][name] == pytest.approx(replicated["stats"][update][name], rel=1e-3)
        torch.testing.assert_close(sharded["logits"], replicated["logits"], rtol=1e-3, atol=1e-3)
        assert sharded["resumed_stats"] == pytest.approx(sharded["stats"][2], rel=1e-6)
        torch.testing.assert_close(sharded["resumed_logits"], sharded["logits"])
    saved = {mode: load_file(tmp_path / f"{mode}-final" / "model.safetensors") for mode in ("replicated", "sharded")}
    assert saved["sharded"].keys() == saved["replicated"].keys()
    initial = load_file(Path(tiny_model_path) / "model.safetensors")
    for name, weight in saved["sharded"].items():
        torch.testing.assert_close(weight, saved["replicated"][name], rtol=1e-3, atol=1e-3, msg=name)
    assert any(not torch.equal(saved["sharded"][name], initial[name]) for name in initial if name in saved["sharded"])


# The likelihood ratio (pre-trained here) refuses a replay buffer: with one, the discriminator is a classifier
@pytest.mark.parametrize(("replay_buffer_size", "pretraining_steps"), [(0, 2), (8, 0)])
def test_gail_with_a_sharded_discriminator_trains_checkpoints_and_resumes_on_two_processes(
    tmp_path, tiny_model_path, prompt_completion_dataset, replay_buffer_size, pretraining_steps
):
    # The trainer's side of FSDP2: the discriminator sharded (as under an FSDP2 launch) is pre-trained or trained with
    # a replay buffer of past completions, gathered into each checkpoint by every process and restored on resume,
    # ending where an uninterrupted run ends
    data_path = tmp_path / "demonstrations.json"
    prompt_completion_dataset.select(range(16)).to_json(data_path)
    torchrun = _torchrun()
    script = [str(Path(__file__).parent / "distributed" / "train_gail.py"), tiny_model_path, str(data_path)]
    options = ["sequence", "gail", "4"]
    extra = [str(replay_buffer_size), str(pretraining_steps), "1"]  # the last: sharded
    _run([*torchrun, *script, str(tmp_path), *options, "", *extra], cwd=tmp_path)
    uninterrupted = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    _run([*torchrun, *script, str(tmp_path), *options, str(tmp_path / "checkpoint-2"), *extra], cwd=tmp_path)
    resumed = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]

    assert uninterrupted[0]["discriminator_sharded"] and resumed[0]["discriminator_sharded"]
    saved = load_file(tmp_path / "checkpoint-4" / "discriminator" / "model.safetensors")
    for name, param in uninterrupted[0]["discriminator"].items():
        assert torch.equal(param, uninterrupted[1]["discriminator"][name]), f"discriminator {name} differs"
        assert not torch.equal(param, uninterrupted[0]["initial_discriminator"][name]), f"{name} did not train"
        torch.testing.assert_close(resumed[0]["discriminator"][name], param, msg=f"resumed discriminator {name}")
        torch.testing.assert_close(saved[name], param, msg=f"saved discriminator {name}")
    for name, param in uninterrupted[0]["policy"].items():
        torch.testing.assert_close(resumed[0]["policy"][name], param, msg=f"resumed policy {name}")


def _tied_checkpoint(path: str, directory: Path) -> str:
    """The checkpoint at `path` with its language-modelling head tied to its input embeddings."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(path, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(path).save_pretrained(directory)
    return str(directory)
