"""
Demonstrations for adversarial imitation, beside `trl.data_utils`: SFT datasets made into GRPO's prompts plus the
expert's responses, the pool the discriminator draws them from, and how prompts and responses (demonstrations and the
policy's completions alike) become the discriminator's samples.
"""

import random
from collections.abc import Callable

from datasets import Dataset, DatasetDict, IterableDataset
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging
from trl.data_utils import is_conversational


logger = logging.get_logger(__name__)


# The expert's response, as GRPO passes it to reward functions: GRPO withholds a column named `completion`
DEMONSTRATION_COLUMN = "demonstration"


def prepare_demonstrations(
    dataset: Dataset | IterableDataset, name: str = "train_dataset"
) -> Dataset | IterableDataset:
    """
    Turn an SFT dataset into GRPO's prompts plus a `demonstration` column holding the expert's response.

    Prompt-completion rows (standard or conversational) keep their `prompt`; `completion` becomes `demonstration`,
    since GRPO withholds a column named `completion` from reward functions. Conversational `messages` rows are split
    at their last assistant turn: what precedes it is the prompt, the turn itself the demonstration.

    Every row of a `Dataset` is checked here; the rows of an `IterableDataset` as they are read.

    Raises:
        `ValueError`: naming `name` and the offending column or row, for datasets without demonstrations, rows with
        an empty demonstration, `messages` without an assistant turn or with turns after the last one, a prompt and
        a demonstration of different formats (text and chat messages), or a message without string `content`.
    """
    columns = dataset.column_names
    if columns is None and isinstance(dataset, IterableDataset):
        # An `IterableDataset` built from a generator declares no features; its first row tells its columns
        columns = list(next(iter(dataset)).keys())
    columns = columns or []
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise ValueError(f"`{name}` is empty: adversarial imitation needs demonstrations.")
    if DEMONSTRATION_COLUMN in columns and "prompt" in columns:
        converted = dataset
    elif "prompt" in columns and "completion" in columns:
        converted = dataset.rename_column("completion", DEMONSTRATION_COLUMN)
    elif "messages" in columns:

        def split_last_assistant_turn(example, index):
            messages = example["messages"]
            _check_messages(messages, index, name, "messages", text_only=False)
            assistant_turns = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
            if not assistant_turns:
                raise ValueError(f"Row {index} of `{name}` has no assistant turn in its `messages`.")
            last = assistant_turns[-1]
            if last != len(messages) - 1:
                raise ValueError(
                    f"Row {index} of `{name}` has {len(messages) - 1 - last} turn(s) after its last assistant turn "
                    f"(roles {[m['role'] for m in messages[last + 1 :]]}): the last assistant turn is the "
                    "demonstration, and what follows it would be dropped. End each conversation with the assistant's "
                    "turn."
                )
            return {"prompt": messages[:last], DEMONSTRATION_COLUMN: [messages[last]]}

        converted = dataset.map(split_last_assistant_turn, with_indices=True, remove_columns=["messages"])
    else:
        raise ValueError(
            f"`{name}` has columns {columns}, but adversarial imitation needs prompts and the expert's responses: "
            "either `prompt` and `completion` (standard or conversational) or `messages`. A language-modelling "
            "dataset (`text` only) has no prompts to generate from."
        )

    def check(example, index):
        _check_prompt_and_demonstration(example["prompt"], example[DEMONSTRATION_COLUMN], index, name)
        return example

    if isinstance(converted, Dataset):
        for index, (prompt, demonstration) in enumerate(
            zip(converted["prompt"], converted[DEMONSTRATION_COLUMN], strict=True)
        ):
            _check_prompt_and_demonstration(prompt, demonstration, index, name)
        return converted
    return converted.map(check, with_indices=True)


def one_row_per_assistant_turn(dataset: Dataset | IterableDataset, name: str = "dataset") -> Dataset | IterableDataset:
    """
    A conversational `messages` dataset as prompt-completion rows, one per assistant turn: each turn is a
    demonstration, with the conversation before it (earlier assistant turns included) as its prompt. The trainers
    take a `messages` row's last assistant turn only; this makes every turn a demonstration, as `SFTTrainer` trains on
    every turn. Other columns are repeated on each of a conversation's rows.

    Raises:
        `ValueError`: naming `name`, without a `messages` column, or naming the row whose messages have no assistant
        turn or a message that is not a dict with `role` and `content`.
    """
    columns = dataset.column_names
    if columns is None and isinstance(dataset, IterableDataset):
        columns = list(next(iter(dataset)).keys())  # one built from a generator declares no features
    if "messages" not in (columns or []):
        raise ValueError(f"`{name}` has columns {columns}: splitting assistant turns needs `messages`.")
    others = [column for column in columns if column != "messages"]

    def split(batch, indices):
        rows = {"prompt": [], "completion": [], **{column: [] for column in others}}
        for position, (messages, index) in enumerate(zip(batch["messages"], indices, strict=True)):
            _check_messages(messages, index, name, "messages", text_only=False)
            turns = [turn for turn, message in enumerate(messages) if message["role"] == "assistant"]
            if not turns:
                raise ValueError(f"Row {index} of `{name}` has no assistant turn in its `messages`.")
            for turn in turns:
                rows["prompt"].append(messages[:turn])
                rows["completion"].append([messages[turn]])
                for column in others:
                    rows[column].append(batch[column][position])
        return rows

    return dataset.map(split, batched=True, with_indices=True, remove_columns=columns)


def response_text(response) -> str:
    """A demonstration's text: itself (standard) or its one assistant turn's content (conversational)."""
    return response if isinstance(response, str) else response[-1]["content"]


def _check_messages(messages, index: int, name: str, column: str, text_only: bool = True) -> None:
    """
    Every message needs a string `role` and a string `content`; with `text_only=False` (prompts), also content
    parts (a list) or no content beside `tool_calls`, which chat templates render.
    """
    if not isinstance(messages, list) or not all(isinstance(message, dict) for message in messages):
        raise ValueError(f"Row {index} of `{name}`: `{column}` must be a list of messages, got {messages!r:.80}.")
    for message in messages:
        content = message.get("content")
        valid_content = isinstance(content, str) or (
            not text_only and (isinstance(content, list) or (content is None and message.get("tool_calls")))
        )
        if not isinstance(message.get("role"), str) or not valid_content:
            raise ValueError(
                f"Row {index} of `{name}`: every message of `{column}` needs a string `role` and "
                + ("a string `content`" if text_only else "a `content`")
                + f", got {message!r:.80}."
            )


def _check_prompt_and_demonstration(prompt, demonstration, index: int, name: str) -> None:
    for column, value in (("prompt", prompt), ("demonstration", demonstration)):
        if not isinstance(value, str | list):
            raise ValueError(
                f"Row {index} of `{name}`: the {column} must be text or a list of chat messages, got {value!r:.80}."
            )
    prompt_is_text, demonstration_is_text = isinstance(prompt, str), isinstance(demonstration, str)
    if prompt_is_text != demonstration_is_text:
        kinds = {True: "text", False: "chat messages"}
        raise ValueError(
            f"Row {index} of `{name}` has a prompt of {kinds[prompt_is_text]} and a demonstration of "
            f"{kinds[demonstration_is_text]}: both must be text (standard) or both chat messages (conversational)."
        )
    if demonstration_is_text:
        text = demonstration
    else:
        _check_messages(prompt, index, name, "prompt", text_only=False)
        _check_one_assistant_turn(demonstration, index, name)
        _check_messages(demonstration, index, name, "completion")
        text = demonstration[0]["content"]
    if not text.strip():
        raise ValueError(f"Row {index} of `{name}` has an empty demonstration.")


def _check_one_assistant_turn(demonstration: list, index: int, name: str) -> None:
    """
    A conversational demonstration is one assistant turn, as each of the policy's completions is: the discriminator
    compares the two, and a turn of another role, or several messages, would reach it in a form no completion has.
    """
    roles = [message.get("role") if isinstance(message, dict) else message for message in demonstration]
    if len(demonstration) != 1:
        raise ValueError(
            f"Row {index} of `{name}` has a completion of {len(demonstration)} messages (roles {roles}), but the "
            "policy generates one assistant turn, which the discriminator compares with the demonstration: it would "
            "tell the two apart by the extra messages (or see only the last one). Move the earlier messages into the "
            "prompt, or give `messages` rows, whose last assistant turn is the demonstration."
        )
    if roles[0] != "assistant":
        raise ValueError(
            f"Row {index} of `{name}` has a completion with role {roles[0]!r}; the policy's completions are "
            "assistant turns, so the demonstration must be one too (`role: assistant`)."
        )


class DemonstrationPool:
    """
    The demonstrations a discriminator draws its expert batches from: the `(prompt, demonstration)` rows of a dataset,
    split once, at random, into rows it trains on and held-out rows on which it is only evaluated.

    Draws are a function of a key (seed, process, generation, update), not of a running random state, so that a
    resumed run draws what the uninterrupted one would have, and each process draws its own demonstrations.

    Args:
        dataset ([`~datasets.Dataset`]): with `prompt` and `demonstration` columns.
        heldout_fraction (`float`, *optional*, defaults to `0.0`): share of the rows held out (at least one row stays
            for training).
        seed (`int`, *optional*, defaults to `0`): fixes the split and the draws.
    """

    def __init__(self, dataset: Dataset, heldout_fraction: float = 0.0, seed: int = 0):
        self.dataset = dataset.select_columns(["prompt", DEMONSTRATION_COLUMN])
        rows = list(range(len(dataset)))
        random.Random(seed).shuffle(rows)
        num_heldout = min(int(len(rows) * heldout_fraction), len(rows) - 1)
        self.heldout_rows, self.training_rows = rows[:num_heldout], rows[num_heldout:]
        self.seed = seed

    def sample(self, count: int, key: tuple, heldout: bool = False) -> tuple[list, list]:
        """`count` prompts and their demonstrations, drawn without replacement while the rows last."""
        rows = self.heldout_rows if heldout else self.training_rows
        rng = random.Random(repr((self.seed, heldout, *key)))
        chosen = rng.sample(rows, count) if count <= len(rows) else rng.choices(rows, k=count)
        batch = self.dataset[chosen]
        return batch["prompt"], batch[DEMONSTRATION_COLUMN]


def prepare_train_and_eval(train_dataset, eval_dataset) -> tuple:
    """[`prepare_demonstrations`] on the training set and on each evaluation set (one, or a dict of them)."""
    if train_dataset is None:
        raise ValueError("`train_dataset` is required: it holds the demonstrations.")
    train_dataset = prepare_demonstrations(train_dataset, "train_dataset")
    if isinstance(eval_dataset, dict | DatasetDict):
        eval_dataset = {key: prepare_demonstrations(ds, f"eval_dataset[{key!r}]") for key, ds in eval_dataset.items()}
    elif eval_dataset is not None:
        eval_dataset = prepare_demonstrations(eval_dataset, "eval_dataset")
    return train_dataset, eval_dataset


class SampleEncoder:
    """
    Prompts and responses as the discriminator reads them, by one code path for demonstrations and the policy's
    completions: `(prompt_ids, response_ids)` in the policy's tokens for a discriminator that takes token ids (the
    prompt tokenised as GRPO tokenises it for generation, chat template and tools included), or one text each for a
    sequence classifier. Demonstrations (given without `completion_ids`) are tokenised as the policy would have
    generated them and cut to `max_completion_length`, as generation cuts the policy's completions.

    Args:
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): the policy's.
        max_completion_length (`int`): GRPO's.
        prompt_ids (`Callable`): `prompts -> list of token ids`, GRPO's own prompt tokenisation.
        takes_token_ids (`bool`): the discriminator's kind of sample.
        chat_template_tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*): the tokenizer whose chat
            template writes conversations as a sequence classifier's texts (the classifier's); defaults to
            `tokenizer`.
        chat_template_kwargs (`dict`, *optional*): GRPO's, for the texts.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        max_completion_length: int,
        prompt_ids: Callable[[list], list],
        takes_token_ids: bool,
        chat_template_tokenizer: PreTrainedTokenizerBase | None = None,
        chat_template_kwargs: dict | None = None,
    ):
        self.tokenizer = tokenizer
        self.max_completion_length = max_completion_length
        self.prompt_ids = prompt_ids
        self.takes_token_ids = takes_token_ids
        if chat_template_tokenizer is None or chat_template_tokenizer.chat_template is None:
            chat_template_tokenizer = tokenizer
        self.chat_template_tokenizer = chat_template_tokenizer
        self.chat_template_kwargs = chat_template_kwargs or {}

    def __call__(self, prompts: list, responses: list, completion_ids: list | None = None) -> list:
        if self.takes_token_ids:
            prompt_ids = self.prompt_ids(prompts)
            if completion_ids is None:
                completion_ids = self.response_ids(responses, prompt_ids=prompt_ids)
            return [(tuple(p), tuple(r)) for p, r in zip(prompt_ids, completion_ids, strict=True)]
        conversational = is_conversational({"prompt": prompts[0]})
        # GRPO's prompt ids only where a text needs them: to cut a demonstration, or to read a completion after its
        # text prompt (a conversation's completion is its content, given alone as a demonstration's is)
        if completion_ids is None:
            responses = self._cut_texts(responses, self.prompt_ids(prompts))
        elif not conversational:
            # A completion's text as it reads after its prompt: a tokenizer that marks word starts (SentencePiece's
            # `▁`) drops the leading space of a completion decoded alone, which a demonstration's text keeps
            responses = [
                self.text_after(head, ids, response)
                for head, ids, response in zip(self.prompt_ids(prompts), completion_ids, responses, strict=True)
            ]
        if not conversational:
            return [prompt + response for prompt, response in zip(prompts, responses, strict=True)]
        return [
            self.chat_template_tokenizer.apply_chat_template(
                prompt + response, tokenize=False, **self.chat_template_kwargs
            )
            for prompt, response in zip(prompts, responses, strict=True)
        ]

    def response_ids(self, responses: list, truncate: bool = True, prompt_ids: list | None = None) -> list[list[int]]:
        """
        Demonstrations as the policy would have generated them: their tokens, then the end-of-sequence token, cut to
        `max_completion_length` tokens unless `truncate=False` (a cut one ends without it, as a cut completion does).
        With `prompt_ids` (GRPO's tokenisation of each demonstration's prompt), tokenised after their prompt's text,
        as SFT tokenised the whole text the policy learned from (see `_token_ids`).
        """
        limit = self.max_completion_length if truncate else None
        return [(ids + [self.tokenizer.eos_token_id])[:limit] for ids in self._token_ids(responses, prompt_ids)]

    def text_after(self, head_ids: list, response_ids: list, fallback: str) -> str:
        """The text `response_ids` add after `head_ids` (special tokens left out), or `fallback` where not one."""
        head = self.tokenizer.decode(head_ids, skip_special_tokens=True)
        whole = self.tokenizer.decode(list(head_ids) + list(response_ids), skip_special_tokens=True)
        return whole[len(head) :] if whole.startswith(head) else fallback

    def _token_ids(self, responses: list, prompt_ids: list | None = None) -> list[list[int]]:
        """
        The demonstrations' tokens, refusing those that hold a special token's text (`special_token_texts`). With
        `prompt_ids`, each is tokenised after its prompt's text and the prompt's tokens dropped, where the prompt's
        tokens are a prefix of the whole's: alone, a tokenizer that marks word starts (SentencePiece's `▁`) or adds
        a prefix space would give a response other tokens than the policy generates after that prompt (a tell the
        discriminator would learn instead of the expert's style). Where a merge crosses the boundary (a prompt that
        ends inside a word), the policy cannot produce the whole's tokens after its prompt's: tokenised alone then.
        """
        texts = [response_text(response) for response in responses]
        for text in texts:
            if found := special_token_texts(self.tokenizer, text):
                raise ValueError(_special_token_message("A demonstration of this batch", found, self.tokenizer))
        if prompt_ids is None:
            return self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        heads = [self.tokenizer.decode(ids, skip_special_tokens=False) for ids in prompt_ids]
        head_ids = self.tokenizer(heads, add_special_tokens=False)["input_ids"]
        wholes = self.tokenizer([h + t for h, t in zip(heads, texts, strict=True)], add_special_tokens=False)
        in_context = [
            whole[len(head) :] if whole[: len(head)] == head else None
            for head, whole in zip(head_ids, wholes["input_ids"], strict=True)
        ]
        # Tokenised alone only where the boundary merged
        merged = [row for row, ids in enumerate(in_context) if ids is None]
        if merged:
            alone = self.tokenizer([texts[row] for row in merged], add_special_tokens=False)["input_ids"]
            for row, ids in zip(merged, alone, strict=True):
                in_context[row] = ids
        return in_context

    def _cut_texts(self, responses: list, prompt_ids: list) -> list:
        """Text demonstrations of more than `max_completion_length` tokens, cut as the policy's completions are."""
        limit = self.max_completion_length
        token_ids = self._token_ids(responses, prompt_ids)
        cut = []
        for head, response, ids in zip(prompt_ids, responses, token_ids, strict=True):
            if len(ids) > limit:
                # As GRPO decodes a completion that reached `max_completion_length` without its end-of-sequence token
                text = self.text_after(head, ids[:limit], self.tokenizer.decode(ids[:limit], skip_special_tokens=True))
                response = text if isinstance(response, str) else [{**response[-1], "content": text}]
            cut.append(response)
        return cut


def special_token_texts(tokenizer: PreTrainedTokenizerBase, text: str) -> list[str]:
    """The texts of `tokenizer`'s special tokens (end of sequence, padding, chat markers) that `text` holds."""
    return [token for token in tokenizer.all_special_tokens if token and token in text]


def _special_token_message(where: str, found: list[str], tokenizer: PreTrainedTokenizerBase) -> str:
    ends = " (the end-of-sequence token, which ends every completion)" if tokenizer.eos_token in found else ""
    return (
        f"{where} holds the text of the policy tokenizer's special token(s) {found}{ends}. Tokenised, the text "
        "becomes that token in the middle of the response, and the policy's completions, decoded, drop special "
        "tokens: no completion can look like it, so the discriminator would learn to spot it. Remove it from the "
        "data (a chat template's markers or an end-of-sequence token left in the text are the usual cause)."
    )


def refuse_special_token_text(tokenizer: PreTrainedTokenizerBase, train_dataset, eval_dataset=None) -> None:
    """
    Refuse, naming the dataset and the row, demonstrations that hold a special token's text; an `IterableDataset`'s
    are refused as they are read ([`SampleEncoder`]).
    """
    datasets = {"train_dataset": train_dataset}
    if isinstance(eval_dataset, dict):
        datasets |= {f"eval_dataset[{key!r}]": dataset for key, dataset in eval_dataset.items()}
    else:
        datasets["eval_dataset"] = eval_dataset
    for name, dataset in datasets.items():
        if not isinstance(dataset, Dataset):
            continue
        for index, response in enumerate(dataset[DEMONSTRATION_COLUMN]):
            if found := special_token_texts(tokenizer, response_text(response)):
                raise ValueError(_special_token_message(f"Row {index} of `{name}`", found, tokenizer))


def refuse_conversations_without_chat_template(tokenizer: PreTrainedTokenizerBase, train_dataset) -> None:
    """
    Conversational prompts are rendered by the policy's chat template, for generation and for the discriminator:
    without one, GRPO would fail at its first batch with a message that names no argument.
    """
    if tokenizer.chat_template is not None or not isinstance(train_dataset, Dataset) or len(train_dataset) == 0:
        return
    if is_conversational({"prompt": train_dataset[0]["prompt"]}):
        raise ValueError(
            "`train_dataset` holds conversations, but the policy's tokenizer (`processing_class`, or the model's "
            "own) has no chat template to render them: pass a tokenizer with one (an instruct or chat checkpoint's), "
            "or set its `chat_template`."
        )


def warn_about_long_demonstrations(dataset, encoder: SampleEncoder) -> None:
    """Say once how many demonstrations the discriminator will see cut, as the policy's completions are."""
    if not isinstance(dataset, Dataset):
        return
    lengths = [len(ids) for ids in encoder.response_ids(dataset[DEMONSTRATION_COLUMN], truncate=False)]
    limit = encoder.max_completion_length
    cut = sum(length > limit for length in lengths)
    if cut:
        logger.warning(
            f"{cut} of {len(lengths)} demonstrations in `train_dataset` are longer than `max_completion_length` "
            f"({limit} tokens with the end-of-sequence token; the longest has {max(lengths)}). The discriminator "
            "sees them cut to that length, as the policy's completions are cut, so that it cannot tell the two apart "
            "by length alone. Raise `max_completion_length` to keep them whole."
        )
