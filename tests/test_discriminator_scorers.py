"""trl_irl/discriminator/scorers.py: what each kind of discriminator reads from its model, and what it refuses."""

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

from trl_irl.discriminator.scorers import (
    LikelihoodRatioScorer,
    ModelKindError,
    SequenceClassifierScorer,
    TokenClassifierScorer,
    check_causal,
    check_output_shape,
    prepare_model,
)


SCORERS = {
    "sequence classifier": (SequenceClassifierScorer(), AutoModelForSequenceClassification),
    "token classifier": (TokenClassifierScorer(), AutoModelForTokenClassification),
    "likelihood ratio": (LikelihoodRatioScorer(), AutoModelForCausalLM),
}


def _model(auto_class, path):
    return (
        auto_class.from_pretrained(path)
        if auto_class is AutoModelForCausalLM
        else auto_class.from_pretrained(path, num_labels=1)
    )


@pytest.mark.parametrize("scorer_kind", SCORERS)
@pytest.mark.parametrize("model_kind", SCORERS)
def test_each_scorer_takes_its_own_kind_of_model_and_refuses_the_others_naming_the_class(
    tiny_model_path, scorer_kind, model_kind
):
    scorer, auto_class = SCORERS[scorer_kind]
    model = _model(SCORERS[model_kind][1], tiny_model_path)
    if model_kind == scorer_kind:
        scorer.check_model(model)
        check_output_shape(model, scorer, torch.device("cpu"))
        return
    with pytest.raises(ModelKindError, match=auto_class.__name__):
        scorer.check_model(model)
        check_output_shape(model, scorer, torch.device("cpu"))


def test_logits_per_sample_or_per_response_token():
    samples = [((1, 2), (3, 4, 5)), ((6,), (7,))]
    assert SequenceClassifierScorer().num_logits(samples) == 2
    assert TokenClassifierScorer().num_logits(samples) == 4
    assert LikelihoodRatioScorer().num_logits(samples) == 2
    assert LikelihoodRatioScorer(token_level=True).num_logits(samples) == 4


def test_a_bidirectional_backbone_is_refused_where_tokens_are_scored(tiny_model_path, tiny_encoder_path):
    check_causal(AutoModelForTokenClassification.from_pretrained(tiny_model_path, num_labels=1), torch.device("cpu"))
    encoder = AutoModelForTokenClassification.from_pretrained(tiny_encoder_path, num_labels=1)
    with pytest.raises(ModelKindError, match="needs a causal backbone.*changing the last token"):
        check_causal(encoder, torch.device("cpu"))


@pytest.mark.parametrize("own_model", [True, False])
def test_a_prepared_model_trains_in_float32_knows_the_pad_token_and_has_no_dropout_when_its_own(
    tiny_model_path, own_model
):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1, dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    trainable = [model.score.weight]
    model.train()
    prepare_model(model, tokenizer, trainable, own_model=own_model, eager=False)
    assert model.score.weight.dtype == torch.float32
    assert next(model.model.parameters()).dtype == torch.bfloat16  # what it does not train stays as loaded
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.training != own_model  # a model shared with the policy keeps the policy's mode
