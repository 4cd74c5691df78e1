"""
The discriminator of adversarial imitation, one job per module:

- `scorers`: the kinds of model (sequence classifier, token classifier, likelihood ratio): what each checks, reads
  and selects;
- `encoding`: samples made into the model's batches (response log-probabilities: the package's `log_probs`);
- `objective`: the balanced cross-entropy, the pairwise loss, label smoothing, the R1 penalty and the statistics
  (pure functions);
- `losses`: what an update minimises (the balanced cross-entropy or GAD's pairwise loss), a micro-batch at a time;
- `replay`: the replay buffer of past policy samples;
- `parallel`: replicated or sharded (FSDP2) across processes;
- `adapters`: a discriminator sharing a LoRA policy's base model;
- `checkpoint`: the checkpoint format;
- `optimizer`: its AdamW optimizer and the guarded step;
- `discriminator`: `Discriminator`, which composes them into an update;
- `likelihood_ratio`: the likelihood-ratio discriminator and the maximum-likelihood pre-training of `q_phi`.
"""

from .checkpoint import STATE_FILE, process_state_file
from .discriminator import Discriminator, DiscriminatorUpdate, TokenDiscriminator
from .likelihood_ratio import LikelihoodRatioDiscriminator, pretrain_likelihood
from .objective import classification_statistics


__all__ = [
    "STATE_FILE",
    "Discriminator",
    "DiscriminatorUpdate",
    "LikelihoodRatioDiscriminator",
    "TokenDiscriminator",
    "classification_statistics",
    "pretrain_likelihood",
    "process_state_file",
]
