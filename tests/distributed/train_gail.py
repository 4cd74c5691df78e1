"""Run by `tests/test_distributed.py` under `torchrun`: a few GAIL or AIRL steps (checkpointing every 2 when there are
more than 2, or resuming from a checkpoint; with a replay buffer of the size given, if any, and as many steps of the
discriminator's pre-training as given; sharded with FSDP2 if the next argument is 1; as a second adapter on a LoRA
policy if the last is 1), then each process
saves its policy and discriminator parameters so the test can check that the replicas stayed identical and that a
resumed run ends where an uninterrupted one does."""

import os
import sys

import torch
from datasets import Dataset
from peft import LoraConfig
from process_exit import exit_when_every_process_is_done
from torch.distributed.tensor import DTensor

from trl_irl import AIRLConfig, AIRLTrainer, GAILConfig, GAILTrainer
from trl_irl.trainer.adversarial_trainer import AdversarialTrainer


def discriminator_parameters(discriminator) -> dict[str, torch.Tensor]:
    """
    What the discriminator trains, each parameter whole, on the CPU (a sharded one gathered from every process, which
    must all call this): on a model shared with the policy, its own adapter only.
    """
    trained = {id(param) for param in discriminator.trainable_parameters()}
    return {
        name: (param.full_tensor() if isinstance(param, DTensor) else param).detach().cpu().clone()
        for name, param in discriminator.model.named_parameters()
        if id(param) in trained
    }


def main(
    model_path: str,
    data_path: str,
    output_dir: str,
    disc_level: str,
    trainer_name: str,
    max_steps: str = "2",
    resume_from_checkpoint: str = "",
    replay_buffer_size: str = "0",
    pretraining_steps: str = "0",
    shard_discriminator: str = "0",
    share_policy_base: str = "0",
) -> None:
    if shard_discriminator == "1":
        # What an FSDP2 launch does to the discriminator; accelerate runs FSDP on GPUs only, so the policy stays DDP
        AdversarialTrainer._shards_discriminator = lambda self: True  # GAIL's and AIRL's
    # The likelihood ratio refuses a replay buffer: with one, the discriminator is a classifier
    replay = {"disc_type": "classifier", "disc_replay_buffer_size": int(replay_buffer_size)}
    config_class, trainer_class = (GAILConfig, GAILTrainer) if trainer_name == "gail" else (AIRLConfig, AIRLTrainer)
    args = config_class(
        output_dir=output_dir,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=6,
        max_steps=int(max_steps),
        learning_rate=1e-3,
        disc_learning_rate=1e-3,
        bf16=False,
        report_to="none",
        save_strategy="steps" if int(max_steps) > 2 else "no",
        save_steps=2,
        disable_tqdm=True,
        seed=0,
        disc_level=disc_level,
        disc_pretraining_steps=int(pretraining_steps),
        disc_pretraining_learning_rate=1e-3,
        **(replay if int(replay_buffer_size) > 0 else {}),
        disc_shares_policy_base=share_policy_base == "1",
        # Without it, `TrainingArguments` on a machine with no GPU sets up a single process even under `torchrun`
        use_cpu=not torch.cuda.is_available(),
    )
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"]) if share_policy_base == "1" else None
    trainer = trainer_class(model=model_path, args=args, train_dataset=Dataset.from_json(data_path), peft_config=lora)
    initial_discriminator = discriminator_parameters(trainer.discriminator)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint or None)
    rank = int(os.environ.get("RANK", 0))
    torch.save(
        {
            "world_size": trainer.accelerator.num_processes,
            "policy": {n: p.detach().cpu() for n, p in trainer.model.named_parameters()},
            "discriminator": discriminator_parameters(trainer.discriminator),
            "discriminator_sharded": trainer.discriminator.sharded,
            "initial_discriminator": initial_discriminator,
        },
        os.path.join(output_dir, f"rank{rank}.pt"),
    )
    exit_when_every_process_is_done()


if __name__ == "__main__":
    main(*sys.argv[1:])
