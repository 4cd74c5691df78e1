"""
A refactoring's check that behaviour did not change: a fixed set of short GAIL and AIRL runs (both discriminator types
and levels, a classifier with every stabiliser, pre-training, a resume, and two processes), each reduced to every
value it logged and a digest of the weights it ended with.

CPU runs are deterministic on one machine, so the same code gives the same fingerprint bit for bit. Record one before
a refactoring and compare after it:

    python benchmarks/behaviour_fingerprint.py --output before.json
    python benchmarks/behaviour_fingerprint.py --compare before.json

Takes about two minutes on 2 CPU cores. Fingerprints are only comparable on the same machine and package versions.
"""

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPOSITORY = Path(__file__).resolve().parent.parent
TWO_PROCESS_SCRIPT = REPOSITORY / "tests" / "distributed" / "train_gail.py"

# name -> (trainer, config overrides)
RUNS = {
    "gail-likelihood_ratio-sequence": ("gail", {}),
    "gail-likelihood_ratio-token": ("gail", {"disc_level": "token"}),
    "gail-classifier-sequence": ("gail", {"disc_type": "classifier"}),
    "gail-classifier-token": ("gail", {"disc_type": "classifier", "disc_level": "token"}),
    "gail-classifier-stabilised": (
        "gail",
        {
            "disc_type": "classifier",
            "disc_label_smoothing": 0.1,
            "disc_gradient_penalty": 0.5,
            "disc_replay_buffer_size": 16,
            "disc_updates_per_generation": 2,
            "reward_clip": 1.0,
            "disc_micro_batch_size": 4,
            "disc_max_grad_norm": 0.5,
        },
    ),
    "gail-pretrained-heldout": (
        "gail",
        {"disc_pretraining_steps": 3, "disc_heldout_fraction": 0.25, "disc_scoring": "after_update"},
    ),
    "airl-likelihood_ratio-sequence": ("airl", {}),
    "airl-likelihood_ratio-token": ("airl", {"disc_level": "token"}),
    "airl-classifier-sequence": ("airl", {"disc_type": "classifier", "log_prob_reduction": "mean"}),
}


def _digest(tensors: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _log_values(log_history: list[dict]) -> list[dict]:
    # Times and throughputs differ from run to run; everything else is a function of the code and the seed
    unstable = ("runtime", "per_second", "time", "total_flos")
    return [
        {key: value for key, value in entry.items() if not any(part in key for part in unstable)}
        for entry in log_history
    ]


def _fixture(directory: Path):
    from trl_irl.benchmark.tiny_models import save_tiny_checkpoint
    from trl_irl.data import load_counting_demonstrations

    demonstrations = load_counting_demonstrations("train")
    corpus = [row["prompt"] + row["completion"] for row in demonstrations]
    model_path = save_tiny_checkpoint(directory / "tiny", corpus, vocab_size=400)
    return str(model_path), demonstrations.select(range(32))


def _one_run(trainer_name: str, overrides: dict, model_path: str, dataset, output_dir: Path, resume=None) -> dict:
    from trl_irl import AIRLConfig, AIRLTrainer, GAILConfig, GAILTrainer

    config_class, trainer_class = (GAILConfig, GAILTrainer) if trainer_name == "gail" else (AIRLConfig, AIRLTrainer)
    # The settings of the GAIL and AIRL tests
    sys.path.insert(0, str(REPOSITORY / "tests"))
    from helpers import adversarial_config

    args = adversarial_config(config_class, output_dir, **overrides)
    trainer = trainer_class(model=model_path, args=args, train_dataset=dataset)
    trainer.train(resume_from_checkpoint=resume)
    discriminator = trainer.discriminator
    trained = {id(param) for param in discriminator.trainable_parameters()}
    return {
        "log": _log_values(trainer.state.log_history),
        "policy": _digest(dict(trainer.model.named_parameters())),
        "discriminator": _digest(
            {name: param for name, param in discriminator.model.named_parameters() if id(param) in trained}
        ),
    }


def _two_processes(model_path: str, dataset, directory: Path) -> dict:
    import torch

    data_path = directory / "two-processes.json"
    dataset.select(range(16)).to_json(data_path)
    with socket.socket() as probe:  # a port free now
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    command += [str(TWO_PROCESS_SCRIPT), model_path, str(data_path), str(directory), "sequence", "gail", "4"]
    subprocess.run(command, cwd=directory, check=True, capture_output=True)
    ranks = [torch.load(directory / f"rank{rank}.pt") for rank in (0, 1)]
    return {
        f"rank{rank}-{part}": _digest(ranks[rank][part]) for rank in (0, 1) for part in ("policy", "discriminator")
    }


def fingerprint() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        model_path, dataset = _fixture(directory)
        results = {
            name: _one_run(trainer, overrides, model_path, dataset, directory / name)
            for name, (trainer, overrides) in RUNS.items()
        }
        # A resume: checkpoint at step 2 of 4, then resume from it; its end must be the uninterrupted run's
        checkpointing = {"max_steps": 4, "save_strategy": "steps", "save_steps": 2}
        results["gail-uninterrupted"] = _one_run("gail", checkpointing, model_path, dataset, directory / "resume")
        results["gail-resumed"] = _one_run(
            "gail",
            checkpointing,
            model_path,
            dataset,
            directory / "resume",
            resume=str(directory / "resume" / "checkpoint-2"),
        )
        results["gail-two-processes"] = _two_processes(model_path, dataset, directory / "two")
    return results


def _differences(before, after, path="") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        found = [f"{path}/{key}: only in one" for key in set(before) ^ set(after)]
        for key in sorted(set(before) & set(after)):
            found += _differences(before[key], after[key], f"{path}/{key}")
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            line
            for i, (b, a) in enumerate(zip(before, after, strict=True))
            for line in _differences(b, a, f"{path}[{i}]")
        ]
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", help="write the fingerprint to this JSON file")
    parser.add_argument("--compare", help="compare with a fingerprint written before; exit 1 on any difference")
    arguments = parser.parse_args()
    results = fingerprint()
    if arguments.output:
        Path(arguments.output).write_text(json.dumps(results, indent=1))
    if arguments.compare:
        differences = _differences(json.loads(Path(arguments.compare).read_text()), json.loads(json.dumps(results)))
        for line in differences:
            print(line)
        print(f"{len(differences)} difference(s) from {arguments.compare}")
        sys.exit(1 if differences else 0)
    if not arguments.output:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
