"""
What `trl-irl demo` offers to choose, kept apart from the modules that use them (which import torch and TRL) so that
`trl-irl demo --help` answers at once.
"""

# The methods `trl_irl.benchmark.comparison` trains and compares, in the order it trains them
ADVERSARIAL_METHODS = ("gail", "gail_token", "airl", "airl_token", "gail_frozen", "airl_frozen", "gad")
# Adversarial methods whose discriminator starts from the policy's own checkpoint whatever `disc_from_large_sft` says
OWN_DISCRIMINATOR_METHODS = ("gad",)
# The non-adversarial uses of the larger SFT model (`large_sft`) that the adversarial methods can take as discriminator
PROXY_METHODS = ("proxy_distillation", "proxy_distillation_jsd", "proxy_sequence_distillation")
# A verifiable reward (a rule checker, `monitoring.ExpertSupportChecker`): alone, with GRPO's KL to the reference, and
# beside GAIL's discriminator frozen and trained
CHECKER_METHODS = ("checker", "checker_kl", "checker_gail_frozen", "checker_gail")
METHODS = (
    *("sft", "weighted_sft", "large_sft", *ADVERSARIAL_METHODS, "oracle", "distillation", *PROXY_METHODS, "sdft"),
    *CHECKER_METHODS,
)
# Trained only when asked for by name: they need the distil regime's teacher or a larger model, or are experimental
BY_NAME_ONLY = (
    *("large_sft", "gail_frozen", "airl_frozen", "gad", "distillation", *PROXY_METHODS, "sdft"),
    *CHECKER_METHODS,
)
# The synthetic expert's regimes (`benchmark.synthetic`): 8 prompts seen in training, or a rule on unseen prompts
SYNTHETIC_REGIMES = ("memorise", "rules")
# ... and a larger LM trained on the rules as the expert, whose text a smaller student learns from
# (`benchmark.teacher`); and a base pretrained on every rule, fine-tuned on a few demonstrations of a narrower rule
# expert (`benchmark.pretraining`)
REGIMES = (*SYNTHETIC_REGIMES, "distil", "pretrained")
