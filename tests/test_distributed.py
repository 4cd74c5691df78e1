import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM


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
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531"]
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
    ("trainer_name", "level", "pretraining_steps"),
    [("gail", "sequence", 0), ("gail", "token", 0), ("airl", "sequence", 0), ("gail", "sequence", 3)],
)
def test_adversarial_replicas_stay_identical_across_two_processes(
    tmp_path, tiny_model_path, prompt_completion_dataset, trainer_name, level, pretraining_steps
):
    # Each process generates for its own prompts and updates its own discriminator replica: the heads start from
    # process 0's and the gradients are averaged, so the replicas must agree after training
    data_path = tmp_path / "demonstrations.json"
    prompt_completion_dataset.select(range(16)).to_json(data_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29532"]
    _run(
        [
            *torchrun,
            str(Path(__file__).parent / "distributed" / "train_gail.py"),
            tiny_model_path,
            str(data_path),
            str(tmp_path),
            level,
            trainer_name,
            *("2", "", "0", str(pretraining_steps)),  # steps, resume from, replay buffer, pre-training steps
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


@pytest.mark.parametrize("replay_buffer_size", [0, 8])
def test_adversarial_resume_on_two_processes_ends_where_the_uninterrupted_run_does(
    tmp_path, tiny_model_path, prompt_completion_dataset, replay_buffer_size
):
    # Each process draws its own demonstrations, keeps its own replay buffer (of its own completions) and restores
    # its own random state: both must resume exactly. Before each process saved its own, process 1 resumed with
    # process 0's buffer and random state.
    data_path = tmp_path / "demonstrations.json"
    prompt_completion_dataset.select(range(16)).to_json(data_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534"]
    script = [str(Path(__file__).parent / "distributed" / "train_gail.py"), tiny_model_path, str(data_path)]
    options = ["sequence", "gail", "4"]
    _run([*torchrun, *script, str(tmp_path), *options, "", str(replay_buffer_size)], cwd=tmp_path)
    uninterrupted = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    checkpoint = tmp_path / "checkpoint-2"
    assert (checkpoint / "discriminator" / "discriminator_state_process1.pt").is_file()
    _run([*torchrun, *script, str(tmp_path), *options, str(checkpoint), str(replay_buffer_size)], cwd=tmp_path)
    resumed = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]

    for rank in (0, 1):
        for model in ("policy", "discriminator"):
            for name, param in uninterrupted[rank][model].items():
                torch.testing.assert_close(resumed[rank][model][name], param, msg=f"rank {rank} {model} {name}")


def test_a_replica_loaded_on_the_meta_device_is_filled_from_process_0(tmp_path, tiny_model_path):
    # FSDP's ram-efficient loading leaves every process but the first on the meta device, where `.to(device)` failed
    # ("Cannot copy out of meta tensor")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29535"]
    script = Path(__file__).parent / "distributed" / "meta_discriminator.py"
    _run([*torchrun, str(script), tiny_model_path, str(tmp_path)], cwd=tmp_path)
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for moment in ("before", "after"):  # loaded alike, then stepped alike
        assert torch.isfinite(rank1[moment]).all()
        torch.testing.assert_close(rank1[moment], rank0[moment])
    assert not torch.equal(rank0["after"], rank0["before"])
