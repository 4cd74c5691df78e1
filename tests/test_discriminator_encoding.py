"""trl_irl/discriminator/encoding.py: samples made into the batches a discriminator's model reads."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoTokenizer

from trl_irl.discriminator.encoding import num_response_tokens, text_batch, token_id_batch


ids = st.lists(st.integers(1, 50), min_size=1, max_size=8)


@given(samples=st.lists(st.tuples(ids, ids), min_size=1, max_size=4), max_length=st.integers(9, 20))
def test_a_long_sample_loses_its_prompt_s_first_tokens_and_keeps_its_response(samples, max_length):
    batch, response_mask = token_id_batch(samples, max_length, min_prompt_tokens=1, pad_token_id=0, device="cpu")
    assert num_response_tokens(samples) == response_mask.sum().item()
    for row, (prompt_ids, response_ids) in enumerate(samples):
        kept = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        expected = (prompt_ids + response_ids)[-max_length:]
        assert kept == expected
        assert batch["input_ids"][row][response_mask[row]].tolist() == response_ids


def test_a_response_that_leaves_no_room_for_the_prompt_is_refused_naming_the_window():
    with pytest.raises(ValueError, match=r"A response of 4 tokens does not fit.*`max_length`, 4"):
        token_id_batch([((1, 2), (3, 4, 5, 6))], max_length=4, min_prompt_tokens=1, pad_token_id=0, device="cpu")
    batch, _ = token_id_batch([((1, 2), (3, 4, 5, 6))], None, min_prompt_tokens=1, pad_token_id=0, device="cpu")
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6]]  # no window: nothing cut


def test_texts_longer_than_the_window_keep_their_end_and_the_tokenizer_its_side(tiny_model_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    text = "Count from 1 by 1, 3 numbers: 1 2 3"
    whole = tokenizer(text)["input_ids"]
    batch = text_batch(tokenizer, [text, "1"], max_length=4, device=torch.device("cpu"))
    assert batch["input_ids"].shape == (2, 4)
    assert batch["input_ids"][0].tolist()[-3:] == whole[-3:]  # the response's end stays
    assert tokenizer.truncation_side == "right"  # as it was
    assert text_batch(tokenizer, [text], max_length=None, device="cpu")["input_ids"][0].tolist() == whole
