"""
Row checks of the datasets that `WeightedSFTTrainer` and `VarianceRewardTrainer` hand to their TRL parents. The
parents fail on a `None` with an `AttributeError` naming no row, train a margin of NaN into a NaN loss, and train on
rows with nothing to learn without a word. A value no row can hold is refused naming its row and column; rows with
nothing to learn are warned about once, with their count, and refused when they are all there is.

Only map-style datasets are read here: an `IterableDataset`'s rows are known once it is read.
"""

import math
from collections.abc import Iterator

from datasets import Dataset
from transformers.utils import logging


logger = logging.get_logger(__name__)

_BATCH_ROWS = 1024
_ROWS_NAMED = 5  # rows named in a warning; the count says the rest


def _rows(dataset: Dataset, columns: list[str]) -> Iterator[tuple[int, dict]]:
    """`(row number, {column: value})` over `columns`, read a batch at a time so that a large dataset stays on disk."""
    index = 0
    for batch in dataset.select_columns(columns).iter(batch_size=_BATCH_ROWS):
        for values in zip(*(batch[column] for column in columns), strict=True):
            yield index, dict(zip(columns, values, strict=True))
            index += 1


def _is_messages(value) -> bool:
    return isinstance(value, list) and all(isinstance(message, dict) for message in value)


def _is_blank(value) -> bool:
    """Text with nothing in it, or messages whose every content is such text."""
    if isinstance(value, str):
        return not value.strip()
    return all(isinstance(message.get("content"), str) and not message["content"].strip() for message in value)


def _refuse_what_no_row_can_hold(index: int, name: str, column: str, value) -> None:
    if not (isinstance(value, str) or _is_messages(value)):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ValueError(
            f"Row {index} of `{name}` has {shown} (a {type(value).__name__}) in `{column}`: every row "
            "needs text there (or, conversational, a list of messages)."
        )


def _report_rows_with_nothing_to_learn(name: str, rows: list[int], total: int, why: str) -> None:
    if not rows:
        return
    named = ", ".join(str(row) for row in rows[:_ROWS_NAMED]) + (", ..." if len(rows) > _ROWS_NAMED else "")
    message = f"{len(rows)} of {total} rows of `{name}` ({'row' if len(rows) == 1 else 'rows'} {named}) {why}"
    if len(rows) == total:
        raise ValueError(f"{message}: there is nothing to train on.")
    logger.warning(f"{message}: they teach nothing.")


def _datasets(dataset, name: str) -> Iterator[tuple[Dataset, str]]:
    """`dataset`, or each entry of a dict of datasets, with the name an error gives it; other kinds are not read."""
    if isinstance(dataset, dict):
        for key, value in dataset.items():
            yield from _datasets(value, f"{name}[{key!r}]")
    elif isinstance(dataset, Dataset) and len(dataset) > 0:
        yield dataset, name


def check_sft_rows(dataset, name: str, text_field: str) -> None:
    """
    Text, prompt and completion columns hold text or messages in every row; rows whose completion (or whole text)
    is blank teach only where to stop, and are counted.
    """
    for part, part_name in _datasets(dataset, name):
        columns = [column for column in (text_field, "prompt", "completion") if column in part.column_names]
        learned = "completion" if "completion" in columns else text_field if text_field in columns else None
        blank = []
        for index, row in _rows(part, columns):
            for column, value in row.items():
                _refuse_what_no_row_can_hold(index, part_name, column, value)
            if learned is not None and _is_blank(row[learned]):
                blank.append(index)
        _report_rows_with_nothing_to_learn(part_name, blank, len(part), f"have a blank `{learned}`")


def check_preference_rows(dataset, name: str) -> None:
    """
    `chosen` and `rejected` hold text or messages, a `margin` a finite number; a pair whose two sides are the same
    pulls the rewards nowhere, and is counted.
    """
    for part, part_name in _datasets(dataset, name):
        columns = [column for column in ("chosen", "rejected", "margin") if column in part.column_names]
        if not columns:
            continue
        same = []
        for index, row in _rows(part, columns):
            for column in ("chosen", "rejected"):
                if column in row:
                    _refuse_what_no_row_can_hold(index, part_name, column, row[column])
            if "margin" in row:
                margin = row["margin"]
                if isinstance(margin, bool) or not isinstance(margin, int | float) or not math.isfinite(margin):
                    raise ValueError(
                        f"Row {index} of `{part_name}` has the margin {margin!r}: a margin must be a finite number "
                        "(a NaN one makes the loss NaN)."
                    )
            if "chosen" in row and "rejected" in row and row["chosen"] == row["rejected"]:
                same.append(index)
        _report_rows_with_nothing_to_learn(part_name, same, len(part), "have the same `chosen` and `rejected`")


# Why each TRL parent drops rows that `max_length` leaves unusable, and what a user can do about it
_ROWS_DROPPED_BY = {
    "SFTTrainer": (
        "have no token to learn within `max_length={max_length}` (their prompt fills it)",
        "Raise `max_length`, or shorten the prompts.",
    ),
    "RewardTrainer": (
        "have a side longer than `max_length={max_length}` tokens",
        "Raise `max_length`, or shorten the responses.",
    ),
}


def check_rows_kept(before, after, name: str, parent: str, max_length: int | None) -> None:
    """
    The TRL parents drop, without a word, the rows that `max_length` leaves unusable (`SFTTrainer`: those truncation
    leaves with no token to learn; `RewardTrainer`: pairs with a side longer than it): counted here, and refused when
    no row is left.
    """
    if not (isinstance(before, Dataset) and isinstance(after, Dataset)) or len(after) >= len(before):
        return
    why, remedy = _ROWS_DROPPED_BY[parent]
    why = why.format(max_length=max_length)
    message = f"{len(before) - len(after)} of {len(before)} rows of `{name}` {why} and were dropped by `{parent}`"
    if len(after) == 0:
        raise ValueError(f"{message}: no row is left. {remedy}")
    logger.warning(f"{message}. {remedy}")
