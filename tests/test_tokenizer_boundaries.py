"""
At the prompt/response boundary, with tokenizers whose behaviour there differs: a demonstration and a completion of
the same text after the same prompt must reach the discriminator identically (`trl_irl.data_utils.SampleEncoder`),
as token ids (the likelihood ratio) and as text (a classifier), in the standard and conversational formats.

"The completion" is what a policy trained by SFT on the demonstrations generates: SFT tokenises the whole text (the
prompt, or the chat template's generation prompt, then the response), so the policy's tokens for the response are
the whole's after the prompt's, then the end-of-sequence token; GRPO hands reward functions those ids and their
text decoded alone. Tokenised alone, a response can get other tokens: SentencePiece-style tokenizers mark word starts
(`▁`) and, in their legacy form, prepend one to every text they tokenise; decoded alone, a completion loses the
leading space its demonstration has.
"""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from trl_irl.benchmark.tiny_models import CHAT_TEMPLATE, END_TOKEN, PAD_TOKEN, ROLE_TOKENS, build_tiny_tokenizer
from trl_irl.data_utils import SampleEncoder


WORDS = "the sky is blue green red gold a of to and colour name another answer".split()
CORPUS = [" ".join(WORDS[i:] + WORDS[:i]) + "." for i in range(len(WORDS))] * 20
SPECIAL_TOKENS = [PAD_TOKEN, END_TOKEN, *ROLE_TOKENS, "<unk>"]


def _sentencepiece_style(legacy: bool) -> PreTrainedTokenizerFast:
    """
    A BPE with SentencePiece's word-start marker, as Llama 2, Mistral v0.1 and TinyLlama's fast tokenizers are built:
    `legacy` (their converted form) prepends `▁` to every text in the normaliser; otherwise (`legacy=False`) the
    Metaspace pre-tokenizer marks the first word only. The decoder drops the leading space of what it decodes.
    """
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    # Merges are learned within words, as SentencePiece's are (it splits at whitespace before training)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    alphabet = sorted(set("".join(CORPUS)) | {"▁", ":", "?"})
    trainer = trainers.BpeTrainer(
        vocab_size=200, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet, show_progress=False
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    if legacy:
        tokenizer.pre_tokenizer = None
        tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tokenizer.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(content=" ", left=1, right=0)]
        )
    else:
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=END_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token="<unk>",
        additional_special_tokens=list(ROLE_TOKENS),
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


TOKENIZERS = {
    "byte-level BPE": build_tiny_tokenizer(CORPUS, vocab_size=300),
    "SentencePiece-style, first word marked": _sentencepiece_style(legacy=False),
    "SentencePiece-style, legacy (every text marked)": _sentencepiece_style(legacy=True),
}


def _prompt_ids(tokenizer):
    """The prompts' ids as GRPO tokenises them for generation (the generation prompt for conversations)."""

    def prompt_ids(prompts):
        if isinstance(prompts[0], str):
            return tokenizer(prompts, add_special_tokens=False)["input_ids"]
        return [tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True) for prompt in prompts]

    return prompt_ids


def _as_the_policy_generates_it(tokenizer, prompt, response) -> tuple[object, list[int]] | None:
    """The completion GRPO hands over when the policy writes `response` as SFT taught it; None across a merge."""
    if isinstance(prompt, str):
        head, text = prompt, response
    else:
        head, text = (
            tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False),
            response[0]["content"],
        )
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    whole_ids = tokenizer(head + text, add_special_tokens=False)["input_ids"]
    if whole_ids[: len(head_ids)] != head_ids:
        return None  # a merge across the boundary: no policy generates these tokens after the prompt's
    completion_ids = whole_ids[len(head_ids) :] + [tokenizer.eos_token_id]
    decoded = tokenizer.decode(completion_ids, skip_special_tokens=True)
    completion = decoded if isinstance(prompt, str) else [{"role": "assistant", "content": decoded}]
    return completion, completion_ids


phrases = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)


@pytest.mark.parametrize("family", TOKENIZERS)
@pytest.mark.parametrize("dataset_format", ["standard", "conversational"])
@pytest.mark.parametrize("takes_token_ids", [True, False], ids=["token ids", "text"])
@settings(max_examples=40, deadline=None)
@given(prompt_words=phrases, response_words=phrases, ending=st.sampled_from(["", ":", "?"]))
def test_a_demonstration_reaches_the_discriminator_as_the_same_completion_does(
    family, dataset_format, takes_token_ids, prompt_words, response_words, ending
):
    tokenizer = TOKENIZERS[family]
    if dataset_format == "standard":
        prompt, demonstration = prompt_words + ending, " " + response_words
    else:
        prompt = [{"role": "user", "content": prompt_words + ending}]
        demonstration = [{"role": "assistant", "content": response_words}]
    generated = _as_the_policy_generates_it(tokenizer, prompt, demonstration)
    assume(generated is not None)
    completion, completion_ids = generated
    encoder = SampleEncoder(tokenizer, 64, prompt_ids=_prompt_ids(tokenizer), takes_token_ids=takes_token_ids)
    assert encoder([prompt], [completion], [completion_ids]) == encoder([prompt], [demonstration])


def test_the_families_differ_where_this_matters():
    """Tokenised alone, or decoded alone, the SentencePiece-style families change a response: why the above tests."""
    byte_level = TOKENIZERS["byte-level BPE"]
    legacy = TOKENIZERS["SentencePiece-style, legacy (every text marked)"]
    marked = TOKENIZERS["SentencePiece-style, first word marked"]
    for tokenizer in (legacy,):
        alone = tokenizer(" blue", add_special_tokens=False)["input_ids"]
        in_context = tokenizer("the sky is blue", add_special_tokens=False)["input_ids"][-len(alone) :]
        assert alone != in_context  # the legacy form prepends a second marker to a text tokenised alone
    for tokenizer in (legacy, marked):
        ids = tokenizer("the sky is blue", add_special_tokens=False)["input_ids"]
        head = tokenizer("the sky is", add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids[len(head) :]) == "blue"  # decoded alone: the space is gone
    ids = byte_level("the sky is blue", add_special_tokens=False)["input_ids"]
    head = byte_level("the sky is", add_special_tokens=False)["input_ids"]
    assert byte_level.decode(ids[len(head) :]) == " blue"


def test_a_merge_across_the_boundary_falls_back_to_the_response_alone():
    # "the sky is bl" + "ue": the whole's tokens cross the boundary, which no policy generating after the prompt's
    # tokens can produce; the response alone is what it would generate
    tokenizer = TOKENIZERS["byte-level BPE"]
    encoder = SampleEncoder(tokenizer, 64, prompt_ids=_prompt_ids(tokenizer), takes_token_ids=True)
    head = tokenizer("the sky is bl", add_special_tokens=False)["input_ids"]
    whole = tokenizer("the sky is blue", add_special_tokens=False)["input_ids"]
    assert whole[: len(head)] != head
    [(_, response_ids)] = encoder(["the sky is bl"], ["ue"])
    assert list(response_ids) == tokenizer("ue", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def test_in_a_batch_only_the_rows_whose_boundary_merged_fall_back_to_the_response_alone():
    tokenizer = TOKENIZERS["byte-level BPE"]
    encoder = SampleEncoder(tokenizer, 64, prompt_ids=_prompt_ids(tokenizer), takes_token_ids=True)
    prompts, responses = ["the sky is", "the sky is bl", "the sky is"], [" blue", "ue", " red"]
    encoded = encoder(prompts, responses)
    for (_, response_ids), prompt, response in zip(encoded, prompts, responses, strict=True):
        [(_, alone_ids)] = encoder([prompt], [response])
        assert response_ids == alone_ids  # as encoded one at a time
    eos = [tokenizer.eos_token_id]
    assert list(encoded[1][1]) == tokenizer("ue", add_special_tokens=False)["input_ids"] + eos
    whole = tokenizer("the sky is blue", add_special_tokens=False)["input_ids"]
    assert list(encoded[0][1]) == whole[len(tokenizer("the sky is", add_special_tokens=False)["input_ids"]) :] + eos


def test_the_held_out_nll_scores_a_demonstration_in_the_tokens_the_discriminator_reads(tmp_path):
    from transformers import AutoModelForCausalLM

    from trl_irl.benchmark.tiny_models import save_tiny_model
    from trl_irl.evaluation import heldout_nll_per_demonstration
    from trl_irl.log_probs import summed_log_probs

    tokenizer = TOKENIZERS["SentencePiece-style, legacy (every text marked)"]
    model = AutoModelForCausalLM.from_pretrained(save_tiny_model(tmp_path / "model", tokenizer))
    prompts, demonstrations = ["the sky is"], [" blue"]
    encoder = SampleEncoder(tokenizer, 64, prompt_ids=_prompt_ids(tokenizer), takes_token_ids=True)
    [(prompt_ids, response_ids)] = encoder(prompts, demonstrations)
    expected, _ = summed_log_probs(model, tokenizer.pad_token_id, [list(prompt_ids)], [list(response_ids)])
    nll, counts = heldout_nll_per_demonstration(model, tokenizer, prompts, demonstrations)
    assert counts == [len(response_ids)] and nll == [-value for value in expected]
    # Not the tokens of the text alone, which the legacy tokenizer starts with an extra word-start marker
    assert len(response_ids) < len(tokenizer(" blue", add_special_tokens=False)["input_ids"]) + 1
