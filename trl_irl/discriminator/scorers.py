r"""
The three kinds of discriminator model, one scorer each: what the model must be, what it is fed, which of its
outputs are the logits.

- `SequenceClassifierScorer`: a one-label sequence classifier (any tokenizer) reads texts; one logit per sample.
- `TokenClassifierScorer`: a one-label token classifier on a causal backbone (the policy's tokenizer) reads token
  ids; one logit per response token.
- `LikelihoodRatioScorer`: a causal LM `q_phi` (the policy's tokenizer) reads token ids; `log q_phi(y | x)` per
  sample, or per response token.

A token-id sample is a `(prompt_ids, response_ids)` pair in the policy's vocabulary. A new kind of discriminator is
a new scorer with the eleven members the three share: `takes_token_ids`, `token_level`, `min_prompt_tokens`,
`needs_causal_model`, `outputs_log_likelihoods`, `expected`, `check_model`, `output_shape_ok`, `num_logits`,
`model_inputs` and `select`.
"""

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..log_probs import response_token_log_probs
from .encoding import num_response_tokens, text_batch, token_id_batch


class ModelKindError(ValueError):
    """
    A model that is not the kind its scorer reads (another head, a bidirectional backbone): its own error type, so that
    whoever chose the kind can add the setting that chose it.
    """


class SequenceClassifierScorer:
    """One logit per text, pooled by a one-label sequence classifier (encoder or decoder, any tokenizer)."""

    takes_token_ids = False  # texts
    token_level = False
    # Prompt tokens a window must keep besides the response
    min_prompt_tokens = 0
    # Whether a token's logit must not see the tokens after it (checked on the model)
    needs_causal_model = False
    # Whether the model's outputs, before any offset, are log-likelihoods of the response (which a maximum-likelihood
    # term on demonstrations can train)
    outputs_log_likelihoods = False
    # The shape of the logits on one sequence of `T` tokens, and the class that gives it, for the error that refuses
    # another model
    expected = ("(1, 1)", "AutoModelForSequenceClassification", "a sequence-level discriminator")

    def check_model(self, model: PreTrainedModel) -> None:
        if model.config.num_labels != 1:
            raise ModelKindError(
                f"The discriminator must output one logit (`num_labels=1`), but its config has "
                f"`num_labels={model.config.num_labels}`. Load it with "
                f"`{self.expected[1]}.from_pretrained(..., num_labels=1)`."
            )

    def output_shape_ok(self, logits: torch.Tensor, length: int) -> bool:
        return tuple(logits.shape) == (1, 1)

    def num_logits(self, samples: list) -> int:
        return len(samples)

    def model_inputs(
        self, samples: list, tokenizer: PreTrainedTokenizerBase, max_length: int | None, device: torch.device
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The model's inputs, and which positions' logits are used (`None`: the pooled one)."""
        return text_batch(tokenizer, samples, max_length, device), None

    def select(self, outputs: torch.Tensor, batch: dict, positions: torch.Tensor | None) -> torch.Tensor:
        return outputs[:, 0]  # (N,)


class TokenClassifierScorer(SequenceClassifierScorer):
    r"""
    A state-action discriminator: one logit per response token, `l_t = D(x, y_<=t)`, from a causal token classifier.
    The logit at a response token's position sees the prompt, the earlier response tokens and the token itself: the
    state `s_t = (x, y_<t)` and the action `a_t = y_t` (Eq. 17-18, 22 of arXiv 2403.12017).
    """

    takes_token_ids = True
    token_level = True
    needs_causal_model = True
    expected = ("(1, T, 1)", "AutoModelForTokenClassification", "a token-level discriminator")

    def output_shape_ok(self, logits: torch.Tensor, length: int) -> bool:
        return tuple(logits.shape) == (1, length, 1)

    def num_logits(self, samples: list) -> int:
        return num_response_tokens(samples)

    def model_inputs(self, samples, tokenizer, max_length, device):
        return token_id_batch(samples, max_length, self.min_prompt_tokens, tokenizer.pad_token_id, device)

    def select(self, outputs, batch, positions):
        return outputs[..., 0][positions]  # (response tokens,)


class LikelihoodRatioScorer:
    r"""
    `log q_phi(y | x)` from a causal LM: summed over the response's tokens (sequence level) or one
    `log q_phi(y_t | x, y_<t)` per response token (`token_level`). The logit is this plus the offset `-log pi` that
    the caller adds, `l = log q_phi - log pi` (AIRL's structure with `f = log q_phi`).

    Args:
        token_level (`bool`, *optional*, defaults to `False`): one logit per response token.
        temperature (`float`, *optional*, defaults to `1.0`): divides `q_phi`'s logits, as the policy's are when its
            `log pi` is taken at the sampling temperature, so that `l = 0` where `q_phi` is the policy.
    """

    takes_token_ids = True
    # A next-token model needs one token before the response to score its first
    min_prompt_tokens = 1
    needs_causal_model = True
    outputs_log_likelihoods = True
    expected = ("(1, T, V)", "AutoModelForCausalLM", "a likelihood-ratio discriminator")

    def __init__(self, token_level: bool = False, temperature: float = 1.0):
        self.token_level = token_level
        self.temperature = temperature

    def check_model(self, model: PreTrainedModel) -> None:
        if model.get_output_embeddings() is None:
            raise ModelKindError(
                f"A likelihood-ratio discriminator is a causal language model, but {type(model).__name__} has no "
                "language-modelling head. Load it with `AutoModelForCausalLM` (by default the policy's checkpoint), "
                "or use a sequence or token classifier."
            )

    def output_shape_ok(self, logits: torch.Tensor, length: int) -> bool:
        return logits.dim() == 3 and logits.shape[:2] == (1, length)  # a distribution over the vocabulary per token

    def num_logits(self, samples: list) -> int:
        return num_response_tokens(samples) if self.token_level else len(samples)

    def model_inputs(self, samples, tokenizer, max_length, device):
        return token_id_batch(samples, max_length, self.min_prompt_tokens, tokenizer.pad_token_id, device)

    def select(self, outputs, batch, positions):
        token_log_probs, scored = response_token_log_probs(  # (N, T - 1) each
            outputs, batch["input_ids"], positions, self.temperature
        )
        if self.token_level:
            return token_log_probs[scored]  # (response tokens,)
        return (token_log_probs * scored).sum(dim=1)  # (N,)


@torch.no_grad()
def check_output_shape(model: PreTrainedModel, scorer, device: torch.device) -> None:
    """A model with another head than `scorer` needs fails here, by name, rather than as a shape error later."""
    length = 4
    input_ids = torch.arange(1, length + 1, device=device)[None] % model.config.vocab_size
    logits = model(input_ids=input_ids).logits
    if not scorer.output_shape_ok(logits, length):
        shape, auto_class, kind = scorer.expected
        raise ModelKindError(
            f"The discriminator ({type(model).__name__}) gives logits of shape {tuple(logits.shape)} on one sequence "
            f"of {length} tokens, but {kind} needs {shape}: load it with `{auto_class}.from_pretrained(..., "
            "num_labels=1)`, or choose the discriminator kind that matches it."
        )


@torch.no_grad()
def check_causal(model: PreTrainedModel, device: torch.device) -> None:
    """Refuse a model whose logit at a token sees the tokens after it (a bidirectional encoder)."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, model.config.vocab_size, (1, 8), generator=generator).to(device)
    changed = input_ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % model.config.vocab_size
    before = model(input_ids=input_ids).logits[0, :-1]
    after = model(input_ids=changed).logits[0, :-1]
    if not torch.allclose(before, after, atol=1e-5):
        raise ModelKindError(
            f"A discriminator that scores response tokens needs a causal backbone, but {type(model).__name__} lets a "
            "token's logit see the tokens after it (changing the last token changed the earlier logits). Use a "
            "decoder (for example the policy's own checkpoint) or a sequence classifier."
        )


def prepare_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, trainable: list, own_model: bool, eager: bool
) -> None:
    """
    Set a discriminator's model up for scoring and training: eval mode on a model of its own (`own_model`), eager
    attention when the gradient penalty needs it (`eager`), the tokenizer's pad id, the `trainable` parameters in
    float32.
    """
    # Dropout stays off, in training too: the logits of an update's forward are then exactly the discriminator's
    # scores before its step, which spares the reward a second forward on the same samples. Label smoothing and the
    # gradient penalty are the regularisers instead. (On a model shared with the policy, only while in use.)
    if own_model:
        model.eval()
    if eager:
        # The penalty differentiates through the gradient (double backward), which the fused SDPA and flash attention
        # kernels do not implement
        model.set_attn_implementation("eager")
    # A decoder classifier scores the last non-padding token, which it finds through the config's pad token
    model.config.pad_token_id = tokenizer.pad_token_id
    # Trainable parameters in float32, as mixed precision keeps its master weights: in bf16 an AdamW step of 1e-5 is
    # below half a unit in the last place of most weights and rounds away (88% of a bf16 checkpoint's weights were
    # unchanged after one update), and an fp16 checkpoint overflowed to NaN in its first step
    for param in trainable:
        if param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()
