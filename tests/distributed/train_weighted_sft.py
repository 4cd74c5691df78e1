"""Run by `tests/test_distributed.py` under `torchrun`: one SGD step of occupancy-weighted SFT, then each process
saves its parameters so the test can compare processes with each other and with a single-process run."""

import os
import sys

import torch
from datasets import Dataset
from process_exit import exit_when_every_process_is_done

from trl_irl import WeightedSFTConfig, WeightedSFTTrainer


def main(model_path: str, data_path: str, output_dir: str, per_device_train_batch_size: int) -> None:
    args = WeightedSFTConfig(
        output_dir=output_dir,
        per_device_train_batch_size=per_device_train_batch_size,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        bf16=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        # Without it, `TrainingArguments` on a machine with no GPU sets up a single process even under `torchrun`
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = WeightedSFTTrainer(model=model_path, args=args, train_dataset=Dataset.from_json(data_path))
    trainer.train()
    rank = int(os.environ.get("RANK", 0))
    parameters = {name: param.detach().cpu() for name, param in trainer.model.named_parameters()}
    torch.save(
        {"world_size": trainer.accelerator.num_processes, "parameters": parameters},
        os.path.join(output_dir, f"rank{rank}.pt"),
    )
    exit_when_every_process_is_done()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
