"""
What `trl-irl demo` offers to choose, kept apart from the modules that use them (which import torch and TRL) so that
`trl-irl demo --help` answers at once.
"""

# The methods `trl_irl.benchmark.comparison` trains and compares
ADVERSARIAL_METHODS = ("gail", "gail_token", "airl", "airl_token")
METHODS = ("sft", "weighted_sft", "large_sft", *ADVERSARIAL_METHODS, "oracle", "distillation", "sdft")
# The synthetic expert's regimes (`benchmark.synthetic`): 8 prompts seen in training, or a rule on unseen prompts
SYNTHETIC_REGIMES = ("memorise", "rules")
# ... and a larger LM trained on the rules as the expert, whose text a smaller student learns from
# (`benchmark.teacher`)
REGIMES = (*SYNTHETIC_REGIMES, "distil")
