"""Run by `tests/test_distributed.py` under `torchrun` with two processes: a discriminator sharded with FSDP2 (or kept
replicated, to compare) takes three updates on each process's own batch, saving its weights and state after the
second; a fresh one restored from that save takes the third again. Each process saves what it saw."""

import os
import sys

import torch
import torch.distributed as dist
from process_exit import exit_when_every_process_is_done
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from trl_irl import Discriminator, LikelihoodRatioDiscriminator


def build(model_path: str, disc_type: str, sharded: bool):
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    torch.manual_seed(0)  # the classifier's new head: the same in the sharded and the replicated run
    settings = {"learning_rate": 1e-2, "max_grad_norm": 1.0, "micro_batch_size": 1}
    if disc_type == "likelihood_ratio":
        discriminator = LikelihoodRatioDiscriminator(
            AutoModelForCausalLM.from_pretrained(model_path), tokenizer, **settings
        )
    else:
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1)
        discriminator = Discriminator(model, tokenizer, **settings)
    return discriminator.shard() if sharded else discriminator


def batches(tokenizer, disc_type: str, rank: int):
    """Three updates' demonstrations and policy samples, different on each process."""
    texts = [
        ("Count from 1 by 1, 3 numbers:", " 1 2 3", " 1 9 4"),
        ("Count from 5 by 2, 3 numbers:", " 5 7 9", " 5 6"),
        ("Count from 2 by 3, 3 numbers:", " 2 5 8", " 2 2 2 2"),
        ("Count from 4 by 1, 2 numbers:", " 4 5", " 7"),
    ]
    result = []
    for update in range(3):
        # Each process's batch: two demonstrations and two policy samples of its own
        rows = [texts[(2 * rank + update + k) % len(texts)] for k in range(2)]
        if disc_type == "likelihood_ratio":

            def pair(prompt, response):
                return tokenizer(prompt)["input_ids"], tokenizer(response, add_special_tokens=False)["input_ids"]

            result.append(([pair(p, e) for p, e, _ in rows], [pair(p, s) for p, _, s in rows]))
        else:
            result.append(([p + e for p, e, _ in rows], [p + s for p, _, s in rows]))
    return result


def main(model_path: str, output_dir: str, disc_type: str, mode: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    sharded = mode == "sharded"
    discriminator = build(model_path, disc_type, sharded)
    updates = batches(discriminator.tokenizer, disc_type, rank)
    stats = [discriminator.update(*updates[0]).stats, discriminator.update(*updates[1]).stats]
    checkpoint = os.path.join(output_dir, f"{mode}-checkpoint")
    os.makedirs(checkpoint, exist_ok=True)
    discriminator.save_pretrained(checkpoint, is_main_process=rank == 0)
    discriminator.save_state(checkpoint, rank)
    dist.barrier()
    stats.append(discriminator.update(*updates[2]).stats)
    scored = updates[0][0] + updates[0][1]
    result = {"stats": stats, "logits": discriminator.logits(scored)}

    restored = build(model_path, disc_type, sharded)
    restored.load(checkpoint, rank)
    result["resumed_stats"] = restored.update(*updates[2]).stats
    result["resumed_logits"] = restored.logits(scored)
    final = os.path.join(output_dir, f"{mode}-final")
    discriminator.save_pretrained(final, is_main_process=rank == 0)
    if sharded:
        # Each process holds a slice of each weight, not a replica
        local = {name: param.to_local().shape for name, param in discriminator.model.named_parameters()}
        full = {name: param.shape for name, param in discriminator.model.named_parameters()}
        result["sliced"] = any(local[name] != full[name] for name in full)
    torch.save(result, os.path.join(output_dir, f"{mode}-rank{rank}.pt"))
    exit_when_every_process_is_done()


if __name__ == "__main__":
    main(*sys.argv[1:])
