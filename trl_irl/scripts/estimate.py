"""`trl-irl estimate gail --config gail.yaml`: the memory one process of that run needs, before any weights load.

The YAML is the one `trl-irl gail` (or `airl`) trains with; `--max_prompt_length` (default 512) is the longest
prompt in tokens, which GRPO does not truncate. See `trl_irl.memory` for what is counted and what is not.
"""

import argparse
import warnings

from trl import get_peft_config

from ..memory import estimate_memory
from .train import ADVERSARIAL_METHODS, discriminator_peft_config, make_parser, model_init_kwargs, use_sft_run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="trl-irl estimate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("method", choices=ADVERSARIAL_METHODS)
    parser.add_argument("--max_prompt_length", "--max-prompt-length", type=int, default=512)
    known, rest = parser.parse_known_args(argv)
    if known.max_prompt_length <= 0:
        parser.error(f"--max_prompt_length must be a positive number, got {known.max_prompt_length}")
    method = known.method
    import torch

    if not torch.cuda.is_available():
        # Planning a GPU run on a machine without one: `bf16: true` is refused there unless the config says CPU
        rest = [*rest, "--use_cpu", "true"]
    parsed = make_parser(method, prog=f"trl-irl estimate {method}").parse_args_and_config(
        rest, fail_with_unknown_args=False
    )
    _, training_args, model_args, _, discriminator_args, _ = parsed[:6]
    use_sft_run(method, model_args, discriminator_args)
    if model_args.model_name_or_path is None:
        parser.error("the config names no policy: set `model_name_or_path` (or `sft_run`)")
    if model_args.load_in_4bit or model_args.load_in_8bit:
        warnings.warn(
            "A quantized policy is counted at its unquantized size: the estimate is an upper bound.", stacklevel=2
        )
    training_args.model_init_kwargs = model_init_kwargs(training_args, model_args)
    estimate = estimate_memory(
        model_args.model_name_or_path,
        training_args,
        discriminator_args.discriminator_model_name_or_path,
        get_peft_config(model_args),
        discriminator_peft_config(discriminator_args, training_args),
        max_prompt_length=known.max_prompt_length,
    )
    print(estimate)
