"""Run by `tests/test_distributed.py` under `torchrun`: process 0 loads the discriminator with its weights, process 1
builds it on the meta device (as FSDP's ram-efficient loading leaves it); after `to` and `synchronize` both must score
alike. Each process saves its logits."""

import os
import sys

import torch
import torch.distributed as dist
from process_exit import exit_when_every_process_is_done
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from trl_irl import Discriminator


def main(model_path: str, output_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    if rank == 0:
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1)
    else:
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(
                AutoConfig.from_pretrained(model_path, num_labels=1)
            )
    discriminator = Discriminator(model, AutoTokenizer.from_pretrained(model_path))
    discriminator.to("cpu")
    discriminator.synchronize()
    texts = ["Count from 1 by 1, 3 numbers: 1 2 3", "Count from 5 by 2, 3 numbers: 5 9 7"]
    before = discriminator.logits(texts)
    discriminator.update(texts[:1], texts[1:])  # a step on both replicas, gradients averaged
    torch.save({"before": before, "after": discriminator.logits(texts)}, os.path.join(output_dir, f"rank{rank}.pt"))
    exit_when_every_process_is_done()


if __name__ == "__main__":
    main(*sys.argv[1:])
