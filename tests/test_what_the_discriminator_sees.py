"""
What the discriminator sees: demonstrations and the policy's completions reach it by one code path
(`trl_irl.data_utils.SampleEncoder`), so that a completion equal to a demonstration reaches it identically, in every
dataset format; what cannot reach it as a completion would (special-token text, several messages, another role) is
refused by name.
"""

import pytest
from datasets import Dataset, IterableDataset
from helpers import adversarial_config
from transformers import AutoTokenizer

from trl_irl import GAILConfig, GAILTrainer


def _trainer(tmp_path, model_path, dataset, **kwargs) -> GAILTrainer:
    return GAILTrainer(
        model=model_path, args=adversarial_config(GAILConfig, tmp_path, max_steps=1), train_dataset=dataset, **kwargs
    )


def _as_grpo_hands_it_over(tokenizer, prompt, demonstration):
    """
    The policy's completion if it generated the demonstration's text as SFT taught it (its tokens, then the
    end-of-sequence token), as GRPO gives it to reward functions, by the tokenizer alone.
    """
    text = demonstration if isinstance(prompt, str) else demonstration[0]["content"]
    completion_ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    # GRPO decodes completions without their special tokens; a conversation's is one assistant turn
    decoded = tokenizer.decode(completion_ids, skip_special_tokens=True)
    completion = decoded if isinstance(prompt, str) else [{"role": "assistant", "content": decoded}]
    return completion, completion_ids


def _generation_prompt_ids(tokenizer, prompt, tools) -> list[int]:
    """The prompt's tokens as the policy generates from them, by the tokenizer alone."""
    if isinstance(prompt, str):
        return tokenizer(prompt)["input_ids"]
    rendered = tokenizer.apply_chat_template(
        prompt, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return rendered["input_ids"]


def _multiply(a: int, b: int) -> int:
    """
    Multiply two integers.

    Args:
        a: The first integer.
        b: The second integer.
    """
    return a * b


@pytest.mark.parametrize("dataset_format", ["standard", "conversational", "messages", "messages with tools"])
@pytest.mark.parametrize("discriminator", ["likelihood ratio", "classifier"])
def test_a_completion_equal_to_a_demonstration_reaches_the_discriminator_identically(
    tmp_path,
    tiny_model_path,
    prompt_completion_dataset,
    conversational_prompt_completion_dataset,
    conversational_dataset,
    dataset_format,
    discriminator,
):
    from trl.chat_template_utils import qwen2_5_chat_template

    kwargs = {}
    dataset = {
        "standard": prompt_completion_dataset,
        "conversational": conversational_prompt_completion_dataset,
        "messages": conversational_dataset,
        "messages with tools": conversational_dataset,
    }[dataset_format]
    if dataset_format == "messages with tools":
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        tokenizer.chat_template = qwen2_5_chat_template  # one that renders the tools into the prompt
        kwargs = {"processing_class": tokenizer, "tools": [_multiply]}
    if discriminator == "classifier":
        kwargs["discriminator"] = tiny_model_path
    disc_type = "classifier" if discriminator == "classifier" else "likelihood_ratio"
    config = adversarial_config(GAILConfig, tmp_path, max_steps=1, disc_type=disc_type)
    trainer = GAILTrainer(model=tiny_model_path, args=config, train_dataset=dataset, **kwargs)
    encoder = trainer.sample_encoder
    assert encoder.takes_token_ids == (discriminator == "likelihood ratio")
    tokenizer = trainer.processing_class
    for row in trainer.train_dataset.select(range(4)):
        prompt, demonstration = row["prompt"], row["demonstration"]
        completion, completion_ids = _as_grpo_hands_it_over(tokenizer, prompt, demonstration)
        as_demonstration = encoder([prompt], [demonstration])
        as_completion = encoder([prompt], [completion], [completion_ids] if encoder.takes_token_ids else None)
        assert as_completion == as_demonstration
        if encoder.takes_token_ids:
            [(prompt_ids, _)] = as_demonstration
            assert list(prompt_ids) == _generation_prompt_ids(tokenizer, prompt, kwargs.get("tools"))
            assert ("_multiply" in tokenizer.decode(prompt_ids)) == ("tools" in dataset_format)
        else:
            # One text: the prompt and the response as the policy's chat template renders them
            [text] = as_completion
            content = demonstration if isinstance(demonstration, str) else demonstration[0]["content"]
            assert text.count(content) == 1


@pytest.mark.parametrize("dataset_format", ["standard", "conversational"])
def test_a_demonstration_holding_a_special_token_s_text_is_refused_naming_the_row(
    tmp_path, tiny_model_path, prompt_completion_dataset, dataset_format
):
    # The tokenizer turns "<|end|>" into its end-of-sequence token, which no completion has mid-way, and decoded
    # completions drop it: the discriminator would win by spotting it
    eos = AutoTokenizer.from_pretrained(tiny_model_path).eos_token
    rows = prompt_completion_dataset.select(range(8)).to_list()
    rows[5]["completion"] += eos + " 99"
    if dataset_format == "conversational":
        rows = [
            {
                "prompt": [{"role": "user", "content": row["prompt"]}],
                "completion": [{"role": "assistant", "content": row["completion"]}],
            }
            for row in rows
        ]
    dataset = Dataset.from_list(rows)
    with pytest.raises(ValueError, match=r"Row 5 of `train_dataset` holds the text .*'<\|end\|>'.*end-of-sequence"):
        _trainer(tmp_path, tiny_model_path, dataset)
    with pytest.raises(ValueError, match=r"Row 5 of `eval_dataset` holds the text"):
        _trainer(tmp_path, tiny_model_path, prompt_completion_dataset, eval_dataset=dataset)


def test_an_iterable_dataset_s_special_token_text_is_refused_when_read(tmp_path, tiny_model_path):
    rows = [{"prompt": "Count from 1 by 1, 3 numbers:", "completion": " 1 2 3<|pad|>"}] * 16
    config = adversarial_config(GAILConfig, tmp_path, max_steps=1, disc_demonstration_source="batch")
    trainer = GAILTrainer(
        model=tiny_model_path, args=config, train_dataset=IterableDataset.from_generator(lambda: iter(rows))
    )
    with pytest.raises(ValueError, match=r"A demonstration of this batch holds the text .*'<\|pad\|>'"):
        trainer.train()


@pytest.mark.parametrize(
    ("completion", "message"),
    [
        (
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"type": "function", "function": {"name": "f"}}],
                },
                {"role": "tool", "content": "4"},
                {"role": "assistant", "content": "It is 4."},
            ],
            r"Row 1 of `train_dataset` has a completion of 3 messages \(roles \['assistant', 'tool', 'assistant'\]\)",
        ),
        (
            [{"role": "assistant", "content": "It is"}, {"role": "assistant", "content": " 4."}],
            "Row 1 .* a completion of 2 messages",
        ),
        ([{"role": "user", "content": "It is 4."}], "Row 1 .* completion with role 'user'"),
    ],
)
def test_a_completion_no_policy_turn_can_take_is_refused_naming_the_row(completion, message):
    from trl_irl.data_utils import prepare_demonstrations

    good = {"prompt": [{"role": "user", "content": "2 + 2?"}], "completion": [{"role": "assistant", "content": "4"}]}
    rows = [good, {"prompt": good["prompt"], "completion": completion}]
    with pytest.raises(ValueError, match=message):
        prepare_demonstrations(Dataset.from_list(rows))
