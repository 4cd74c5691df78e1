"""
The discriminator's start, before the policy moves: `disc_pretraining_steps` of maximum likelihood for `q_phi`, and the
knowledge gap, how much more than the policy it knows of the demonstrations (`disc/start_*`), measured on one draw of
held-out demonstrations.
"""

from datasets import Dataset
from tqdm.auto import tqdm
from transformers.utils import logging

from ..data_utils import DemonstrationPool
from ..discriminator import Discriminator, LikelihoodRatioDiscriminator, pretrain_likelihood
from ..log_probs import mean_negative_log_likelihood


logger = logging.get_logger(__name__)

# Held-out demonstrations measured before training: by the pre-training (before and after) and the knowledge gap
START_SAMPLE_SIZE = 256


def start_demonstrations(pool, sample_encoder) -> list:
    """
    Up to `START_SAMPLE_SIZE` demonstrations of `pool`, held-out ones (training ones when none are held out), encoded:
    one draw for every measurement before training, so that `disc/pretraining_heldout_nll_end` and
    `disc/start_nll_discriminator` are the same figure on the same demonstrations.
    """
    heldout = bool(pool.heldout_rows)
    rows = pool.heldout_rows if heldout else pool.training_rows
    return sample_encoder(*pool.sample(min(len(rows), START_SAMPLE_SIZE), ("pretraining",), heldout=heldout))


def pretrain_on_pool(
    discriminator: LikelihoodRatioDiscriminator, pool, sample_encoder, args, process_index: int, num_processes: int
) -> dict[str, float]:
    """
    `args.disc_pretraining_steps` maximum-likelihood steps of `q_phi` on demonstrations drawn from `pool` (the ones the
    discriminator trains on), measured on up to 256 held-out ones. Each process draws its own batch and the gradients
    are averaged, as in the discriminator's updates. Returns the statistics logged with the first batch.
    """
    batch_size = (
        args.disc_pretraining_batch_size
        or args.disc_demonstrations_per_update
        or args.generation_batch_size // num_processes
    )
    heldout = start_demonstrations(pool, sample_encoder) if pool.heldout_rows else None
    # Pre-training can take as long as an SFT run, before `Trainer`'s own progress bar appears: show its own
    progress = tqdm(
        total=args.disc_pretraining_steps,
        desc="Pre-training the discriminator",
        disable=args.disable_tqdm or process_index != 0,
    )

    def draw_batch(step: int) -> list:
        progress.update(1)
        return sample_encoder(*pool.sample(batch_size, ("pretraining", process_index, step)))

    # Weight decay and gradient clipping as `Trainer` applies them in SFT (`weight_decay`, 0 by default, where torch's
    # AdamW would decay by 0.01; `max_grad_norm`, 1.0), so that the pre-training is the SFT it stands for
    stats = pretrain_likelihood(
        discriminator,
        draw_batch,
        args.disc_pretraining_steps,
        args.disc_pretraining_learning_rate,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        heldout=heldout,
    )
    progress.close()
    logger.info(f"Pre-trained the discriminator for {args.disc_pretraining_steps} steps: {stats}")
    return stats


# Below this many nats per token more than the policy, the discriminator is taken to know nothing more: a copy of the
# policy measures about 1e-6 through the two models' different float paths
KNOWLEDGE_GAP_WARNING = 0.01


def knowledge_gap(
    discriminator: Discriminator, policy, pool, sample_encoder, args, eval_dataset=None
) -> dict[str, float]:
    """
    How much more than the policy the likelihood-ratio discriminator knows of the demonstrations when training starts:
    the policy's and `q_phi`'s negative log-likelihood per token of up to 256 held-out demonstrations (training ones
    when none are held out), and their difference, `knowledge_gap` (nats per token; 0 for a copy of the policy). The
    reward `log q_phi - log pi` can only teach what `q_phi` knows better; updates may add to it, or erase it.

    Held out from the discriminator's updates, those demonstrations may still be rows that a user's SFT of the
    discriminator (or of the policy) trained on, where the gap measures memorisation too. With an `eval_dataset` (one
    set of demonstrations, which no SFT of the user's should have seen), the same is measured on up to 256 of them
    (`start_eval_*`), and the warning, once, reads that gap. Empty for a classifier, whose logits are no likelihood.
    """
    if not isinstance(discriminator, LikelihoodRatioDiscriminator) or pool is None:
        return {}
    samples = start_demonstrations(pool, sample_encoder)
    where = "held-out" if pool.heldout_rows else "training (none are held out: `disc_heldout_fraction=0`)"
    stats = _likelihood_gap(discriminator, policy, samples, sample_encoder.tokenizer.pad_token_id, args, "start_")
    prefix = "start_"
    if isinstance(eval_dataset, Dataset) and len(eval_dataset) > 0:
        eval_pool = DemonstrationPool(eval_dataset, seed=args.seed)
        samples, where, prefix = (
            start_demonstrations(eval_pool, sample_encoder),
            "evaluation (`eval_dataset`)",
            "start_eval_",
        )
        stats |= _likelihood_gap(discriminator, policy, samples, sample_encoder.tokenizer.pad_token_id, args, prefix)
    nll_policy, nll_discriminator = stats[f"{prefix}nll_policy"], stats[f"{prefix}nll_discriminator"]
    gap = stats[f"{prefix}knowledge_gap"]
    if gap < KNOWLEDGE_GAP_WARNING:
        logger.warning(
            f"The discriminator knows no more of the demonstrations than the policy: on {len(samples)} {where} "
            f"demonstrations its negative log-likelihood is {nll_discriminator:.3f} nats per token, the policy's "
            f"{nll_policy:.3f} (`disc/{prefix}knowledge_gap` {gap:.3f}). Its reward starts at 0 and teaches only what "
            "its own updates learn; the measured gains over SFT came with a discriminator that knew more: the end of "
            "the SFT run whose middle is the policy (`sft_run_checkpoints`), a larger model trained by SFT on the "
            "same demonstrations, or `disc_pretraining_steps`. See docs/which_trainer.md."
        )
    else:
        logger.info(f"The discriminator knows {gap:.3f} nats per token more than the policy ({where} demonstrations).")
    return stats


def _likelihood_gap(discriminator, policy, samples: list, pad_token_id: int, args, prefix: str) -> dict[str, float]:
    """The policy's and `q_phi`'s negative log-likelihood per token of `samples`, and the first minus the second."""
    nll_policy = mean_negative_log_likelihood(
        policy, samples, pad_token_id, args.temperature, args.disc_micro_batch_size
    )
    nll_discriminator = discriminator.negative_log_likelihood(samples)
    return {
        f"{prefix}nll_policy": nll_policy,
        f"{prefix}nll_discriminator": nll_discriminator,
        f"{prefix}knowledge_gap": nll_policy - nll_discriminator,
    }
