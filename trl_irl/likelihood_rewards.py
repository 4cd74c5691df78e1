"""
Causal language models as GRPO reward functions and rerankers: `LikelihoodReward` (`log q(y | x)`, how AIRL's reward
model is reused) and `LikelihoodRatioReward` (`log q - log p`, the likelihood-ratio discriminator's logit with a fixed
`q`).
"""

from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

from .log_probs import generation_prompt_ids, summed_log_probs


logger = logging.get_logger(__name__)


def process_device() -> torch.device:
    """The device of the calling process: under a trainer (and `accelerate launch`), the policy's."""
    from accelerate import PartialState

    return PartialState().device


def _refuse_another_kind_of_model(config, path) -> None:
    """
    A directory of a sequence classifier (say a `RewardTrainer` model) loads as a causal LM with a new, random
    language-modelling head, only a load report saying so: its reward would be noise. Refuse it by its architecture.
    """
    architectures = getattr(config, "architectures", None) or []
    if architectures and not any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures):
        raise ValueError(
            f"{str(path)!r} holds a {architectures[0]}, not a causal language model: `LikelihoodReward` scores "
            "completions by a causal LM's log-probabilities (AIRL's `reward_model/` with the default "
            "likelihood-ratio discriminator, or an SFT model). A sequence classifier's score is a GRPO reward as it "
            "is: pass its path in `reward_funcs`."
        )


# The folders a GAIL or AIRL run saves its learned model in, beside the policy at the top of `output_dir`
RUN_SUBFOLDERS = {"reward_model": "AIRL's reward model", "discriminator": "GAIL's discriminator"}


def _warn_about_a_run_folder(path) -> None:
    """
    A GAIL or AIRL run's `output_dir` holds the policy at its top and the learned model in a subfolder: given the
    top, the policy is what loads. Legitimate (a policy's likelihood is a reward too), but more often the wrong folder.
    """
    for folder, what in RUN_SUBFOLDERS.items():
        if (Path(path) / folder / "config.json").is_file():
            logger.warning(
                f"{str(path)!r} is the output directory of a run that saved {what} in {str(Path(path) / folder)!r}: "
                "the policy at its top is loaded as the reward. Pass the subfolder to score with the learned model."
            )


class LikelihoodReward:
    """
    GRPO reward function `log q(y | x)`: the summed log-probability of each completion under a causal LM `q`.

    This is how the reward model that AIRL leaves behind with `disc_type="likelihood_ratio"`
    (`<output_dir>/reward_model/`, the recovered expert `q_phi`) serves `GRPOTrainer(reward_funcs=...)`. `q` must share
    the policy's tokenizer, since GRPO hands over the generated token ids. Prompts are tokenised as GRPO tokenises them
    for generation (the chat template with a generation prompt for conversations).

    Args:
        model ([`~transformers.PreTrainedModel`]): a causal LM.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): the policy's (and `model`'s) tokenizer.
        temperature (`float`, *optional*, defaults to `1.0`): divides `model`'s logits, as during training.
        micro_batch_size (`int`, *optional*): completions scored per forward; default: the whole batch at once (its
            float32 logits over the vocabulary are the largest tensor of a call).
        device (`str` or `torch.device`, *optional*): where `model` scores. Default: the device of the process that
            calls it (`accelerate`'s, the policy's under a trainer), where `model` is moved at the first call.
    """

    __name__ = "likelihood"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        temperature: float = 1.0,
        micro_batch_size: int | None = None,
        device: str | torch.device | None = None,
    ):
        if tokenizer.pad_token_id is None:
            # Found here rather than at GRPO's first reward: batches of completions need it
            raise ValueError(
                f"The tokenizer of `LikelihoodReward` ({tokenizer.name_or_path!r}) has no padding token, which its "
                "batches need; set one first, e.g. `tokenizer.pad_token = tokenizer.eos_token`."
            )
        if not temperature > 0:  # NaN fails it too
            raise ValueError(f"The `temperature` of `LikelihoodReward` must be positive, got {temperature!r}.")
        if micro_batch_size is not None and not micro_batch_size > 0:
            raise ValueError(
                f"The `micro_batch_size` of `LikelihoodReward` must be positive, got {micro_batch_size!r}."
            )
        self.model, self.tokenizer, self.temperature = model.eval(), tokenizer, temperature
        self.micro_batch_size, self.device = micro_batch_size, device
        self._vocabulary_checked = False

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        temperature: float = 1.0,
        micro_batch_size: int | None = None,
        device: str | torch.device | None = None,
        **model_kwargs,
    ) -> "LikelihoodReward":
        """Load the causal LM and its tokenizer from `path` (a directory or a Hub id); `model_kwargs` go to the LM."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        # The tokenizer is loaded from the same revision, with the same trust in remote code, as the model
        tokenizer_kwargs = {key: model_kwargs[key] for key in ("revision", "trust_remote_code") if key in model_kwargs}
        _refuse_another_kind_of_model(AutoConfig.from_pretrained(path, **tokenizer_kwargs), path)
        _warn_about_a_run_folder(path)
        model = AutoModelForCausalLM.from_pretrained(path, **model_kwargs)
        return cls(
            model, AutoTokenizer.from_pretrained(path, **tokenizer_kwargs), temperature, micro_batch_size, device
        )

    def _on_scoring_device(self) -> None:
        """`model` on `device`, or on the calling process's (the policy's, under a trainer) when none was given."""
        if getattr(self.model, "hf_device_map", None) or getattr(self.model, "is_quantized", False):
            return  # placed by `device_map` or quantised when loaded: moving it would undo that
        if self.device is None:
            self.device = process_device()
        if self.model.device != torch.device(self.device):
            self.model.to(self.device)

    def _check_vocabulary(self, completions: list, completion_ids: list) -> None:
        """
        Refuse, at the first call, completion ids its tokenizer does not decode to the completions' text: ids of
        another vocabulary (a policy of another model family) would be scored as if they were its own. Every
        non-empty completion must differ for a refusal (another vocabulary garbles them all; special tokens and
        surrounding spaces are left out of the comparison).
        """
        self._vocabulary_checked = True
        special = [token for token in self.tokenizer.all_special_tokens if token]

        def normalised(text: str) -> str:
            for token in special:
                text = text.replace(token, "")
            return text.strip()

        pairs = [
            (completion[-1]["content"] if isinstance(completion, list) else completion, ids)
            for completion, ids in zip(completions, completion_ids, strict=True)
            if len(ids)
        ]
        decoded = [self.tokenizer.decode(ids, skip_special_tokens=True) for _, ids in pairs]
        if pairs and all(normalised(text) != normalised(d) for (text, _), d in zip(pairs, decoded, strict=True)):
            raise ValueError(
                f"The tokenizer of `LikelihoodReward` ({self.tokenizer.name_or_path!r}) decodes the completion ids it "
                f"was given to other text than the completions' (e.g. {decoded[0]!r} for {pairs[0][0]!r}): the ids "
                "come from another vocabulary, and a reward model must share the policy's tokenizer. Use a reward "
                "model of the policy's family (or score the text with your own reward function)."
            )

    def __call__(self, prompts: list, completions: list, completion_ids: list, **kwargs) -> list[float]:
        if not self._vocabulary_checked:
            self._check_vocabulary(completions, completion_ids)
        self._on_scoring_device()
        prompt_ids = generation_prompt_ids(self.tokenizer, prompts)
        rewards, _ = summed_log_probs(
            self.model,
            self.tokenizer.pad_token_id,
            prompt_ids,
            completion_ids,
            self.temperature,
            self.micro_batch_size,
        )
        return rewards


class LikelihoodRatioReward:
    """
    GRPO reward function `log q(y | x) - log p(y | x)` between two causal LMs sharing a tokenizer: the
    likelihood-ratio discriminator's logit, with `q` its `q_phi` (or an SFT checkpoint that knows more) and `p` the
    policy or the model sampled from. Its optimum moves `p` towards `q`; as a reranker it prefers what `q` finds
    likelier than `p` does (the extrapolation `log pi_SFT - log pi_init` of arXiv 2405.15624).

    Args:
        model ([`~transformers.PreTrainedModel`]): `q`.
        reference_model ([`~transformers.PreTrainedModel`]): `p`.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): both models' tokenizer.
        temperature (`float`, *optional*, defaults to `1.0`): divides both models' logits.
        micro_batch_size (`int`, *optional*), device (*optional*): as [`LikelihoodReward`]'s, for both models.
    """

    __name__ = "likelihood_ratio"

    def __init__(
        self,
        model: PreTrainedModel,
        reference_model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        temperature: float = 1.0,
        micro_batch_size: int | None = None,
        device: str | torch.device | None = None,
    ):
        self.numerator = LikelihoodReward(model, tokenizer, temperature, micro_batch_size, device)
        self.denominator = LikelihoodReward(reference_model, tokenizer, temperature, micro_batch_size, device)

    def __call__(self, prompts: list, completions: list, completion_ids: list, **kwargs) -> list[float]:
        log_q = self.numerator(prompts, completions, completion_ids)
        log_p = self.denominator(prompts, completions, completion_ids)
        return [q - p for q, p in zip(log_q, log_p, strict=True)]
