"""trl_irl/log_probs.py: the forwards every part of the package shares, against hand computations."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_irl.log_probs import (
    evaluating,
    generation_prompt_ids,
    mean_negative_log_likelihood,
    micro_batches,
    prompt_response_batch,
    response_token_log_probs,
    summed_log_probs,
)


@given(st.lists(st.integers(), max_size=30), st.one_of(st.none(), st.integers(1, 8)))
def test_micro_batches_are_consecutive_slices_of_at_most_the_size(samples, size):
    chunks = list(micro_batches(samples, size))
    assert [item for chunk in chunks for item in chunk] == samples
    assert all(0 < len(chunk) <= (size or len(samples)) for chunk in chunks)
    assert (chunks == []) == (samples == [])


@pytest.mark.parametrize("was_training", [True, False])
def test_evaluating_restores_the_mode_also_when_the_block_raises(was_training):
    model = torch.nn.Dropout().train(was_training)
    with pytest.raises(RuntimeError), evaluating(model):
        assert not model.training
        raise RuntimeError
    assert model.training is was_training


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_path):
    return AutoModelForCausalLM.from_pretrained(tiny_model_path), AutoTokenizer.from_pretrained(tiny_model_path)


def _by_hand(model, prompt_ids, response_ids, temperature):
    """log p(response | prompt), one sequence at a time, from the full log-softmax."""
    ids = torch.tensor([prompt_ids + response_ids])
    log_probs = (model(input_ids=ids).logits[0, :-1] / temperature).log_softmax(-1)
    positions = range(len(prompt_ids) - 1, ids.shape[1] - 1)
    return sum(log_probs[p, ids[0, p + 1]].item() for p in positions)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_summed_log_probs_are_each_response_s_log_likelihood_in_any_micro_batches(model_and_tokenizer, temperature):
    model, tokenizer = model_and_tokenizer
    prompts = generation_prompt_ids(tokenizer, ["Count: 1 2", "Say", "Count: 5 6 7 8"])
    responses = [[17, 18, 19], [20], [21, 22]]
    model.train()
    sums, counts = summed_log_probs(model, tokenizer.pad_token_id, prompts, responses, temperature, micro_batch_size=2)
    assert model.training  # the mode it was in
    assert counts == [3, 1, 2]
    with torch.no_grad():
        expected = [_by_hand(model.eval(), p, r, temperature) for p, r in zip(prompts, responses, strict=True)]
    assert sums == pytest.approx(expected, abs=1e-4)
    whole, _ = summed_log_probs(model, tokenizer.pad_token_id, prompts, responses, temperature)
    assert whole == pytest.approx(sums, abs=1e-5)
    mean_nll = mean_negative_log_likelihood(
        model, list(zip(prompts, responses, strict=True)), tokenizer.pad_token_id, temperature
    )
    assert mean_nll == pytest.approx(-sum(expected) / 6, abs=1e-4)


def test_text_prompts_are_tokenised_as_the_tokenizer_does_and_conversations_with_the_chat_template(
    model_and_tokenizer,
):
    _, tokenizer = model_and_tokenizer
    assert generation_prompt_ids(tokenizer, ["Count: 1"]) == [tokenizer("Count: 1")["input_ids"]]
    if tokenizer.chat_template is None:
        pytest.skip("the tiny tokenizer has no chat template")
    conversation = [[{"role": "user", "content": "Count"}]]
    expected = tokenizer.apply_chat_template(
        conversation[0], add_generation_prompt=True, tokenize=True, return_dict=True
    )
    assert generation_prompt_ids(tokenizer, conversation) == [expected["input_ids"]]


# The likelihood ratio `log q(y | x) - log p(y | x)`: scored here with bigram "models" (each token's logits a row of
# a table, indexed by the token before it), whose log-likelihoods have a closed form, through the same batching and
# log-probability code as the discriminator and `LikelihoodReward`
VOCABULARY = 7
token_ids = st.lists(st.integers(1, VOCABULARY - 1), min_size=1, max_size=5)
samples = st.lists(st.tuples(token_ids, token_ids), min_size=1, max_size=4)  # (prompt ids, response ids)


def _bigram_log_likelihoods(table: torch.Tensor, samples: list, temperature: float = 1.0) -> torch.Tensor:
    """Each response's log-likelihood through `prompt_response_batch` and `response_token_log_probs`."""
    prompt_ids, response_ids = zip(*samples, strict=True)
    batch, response_mask = prompt_response_batch(prompt_ids, response_ids, pad_token_id=0, device="cpu")
    log_probs, mask = response_token_log_probs(
        table[batch["input_ids"]], batch["input_ids"], response_mask, temperature
    )
    return (log_probs * mask).sum(dim=1)


def _bigram_by_hand(table: torch.Tensor, prompt: list, response: list, temperature: float = 1.0) -> float:
    sequence = prompt + response
    return sum(
        (table[sequence[i - 1]] / temperature).log_softmax(-1)[sequence[i]].item()
        for i in range(len(prompt), len(sequence))
    )


tables = st.integers(0, 2**16).map(
    lambda seed: torch.randn(VOCABULARY, VOCABULARY, generator=torch.Generator().manual_seed(seed)) * 3
)


@given(q=tables, p=tables, batch=samples, temperature=st.floats(0.3, 2.0))
def test_the_likelihood_ratio_is_the_difference_of_closed_form_log_likelihoods_whatever_the_batch(
    q, p, batch, temperature
):
    ratio = _bigram_log_likelihoods(q, batch, temperature) - _bigram_log_likelihoods(p, batch, temperature)
    for index, (prompt, response) in enumerate(batch):
        expected = _bigram_by_hand(q, prompt, response, temperature) - _bigram_by_hand(
            p, prompt, response, temperature
        )
        assert ratio[index].item() == pytest.approx(expected, rel=1e-5, abs=1e-4)
        # Alone, padded differently, the same figure
        alone = _bigram_log_likelihoods(q, [(prompt, response)], temperature)
        alone -= _bigram_log_likelihoods(p, [(prompt, response)], temperature)
        assert alone.item() == pytest.approx(ratio[index].item(), rel=1e-5, abs=1e-5)
    # A model against itself: 0 for every response; swapping the two flips the sign
    assert torch.equal(_bigram_log_likelihoods(q, batch) - _bigram_log_likelihoods(q, batch), torch.zeros(len(batch)))
    swapped = _bigram_log_likelihoods(p, batch, temperature) - _bigram_log_likelihoods(q, batch, temperature)
    torch.testing.assert_close(swapped, -ratio)
