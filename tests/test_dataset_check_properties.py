"""
Property tests of every trainer's dataset checks: a valid dataset with one row (or one whole column) corrupted, in
every way a real dataset gets corrupted, is refused naming that row (and, where it has one, its column), warned about
naming the row, or accepted where the value is one the trainer can learn from. Each outcome is stated per corruption,
so a check that refused everything, or nothing, would fail here.
"""

import pytest
from datasets import Dataset
from helpers import logged_warnings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

import trl_irl.trainer.row_checks as row_checks
from trl_irl.benchmark.tiny_models import END_TOKEN
from trl_irl.data_utils import prepare_demonstrations, refuse_special_token_text
from trl_irl.trainer.row_checks import check_preference_rows, check_sft_rows


# A value put into one row of a text column
ROW_CORRUPTIONS = {
    "none": None,
    "empty": "",
    "blank": " \n\t",
    "very_long": " 1" * 5000,
    "special_token_text": f" 1 2{END_TOKEN} 3",
}
# A column of another kind than text: Arrow holds one type per column, so such a column is wrong in every row
COLUMN_CORRUPTIONS = {"int": 7, "nan": float("nan"), "infinity": float("inf"), "list_of_ints": [1, 2]}

texts = st.text(alphabet="abc 123", min_size=1, max_size=12).filter(lambda text: text.strip())
valid_rows = st.lists(st.tuples(texts, texts), min_size=1, max_size=6)  # pairs of texts
property_settings = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def corruptions(draw, columns: tuple[str, ...]):
    """`(rows, column, kind, first corrupted row)`: valid rows with one row or one column corrupted."""
    values = draw(st.lists(st.tuples(*[texts] * len(columns)), min_size=1, max_size=6))
    rows = [dict(zip(columns, row, strict=True)) for row in values]
    column = draw(st.sampled_from(columns))
    kind = draw(st.sampled_from(sorted(ROW_CORRUPTIONS) + sorted(COLUMN_CORRUPTIONS)))
    if kind in ROW_CORRUPTIONS:
        index = draw(st.integers(0, len(rows) - 1))
        rows[index][column] = ROW_CORRUPTIONS[kind]
    else:
        index = 0
        for row in rows:
            row[column] = COLUMN_CORRUPTIONS[kind]
    return rows, column, kind, index


def _warnings(caplog) -> logged_warnings:
    """The row checks' warnings of this example alone: `caplog` is one for all of a test's hypothesis examples."""
    caplog.clear()
    return logged_warnings(caplog, row_checks.logger.name)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    return AutoTokenizer.from_pretrained(tiny_model_path)


@property_settings
@given(corruption=corruptions(("prompt", "completion")))
def test_adversarial_demonstrations_are_refused_by_row_or_accepted(tokenizer, corruption):
    """GAIL's and AIRL's checks: `prepare_demonstrations`, then the special-token check."""
    rows, column, kind, index = corruption
    refused = kind in ("none", *COLUMN_CORRUPTIONS) or (
        column == "completion" and kind in ("empty", "blank", "special_token_text")
    )
    if refused:
        with pytest.raises(ValueError, match=rf"Row {index} of `train_dataset`"):
            refuse_special_token_text(tokenizer, prepare_demonstrations(Dataset.from_list(rows)))
    else:
        demonstrations = prepare_demonstrations(Dataset.from_list(rows))
        refuse_special_token_text(tokenizer, demonstrations)
        assert demonstrations["demonstration"] == [row["completion"] for row in rows]


@property_settings
@given(corruption=corruptions(("prompt", "completion")))
def test_sft_rows_are_refused_by_row_and_column_warned_about_by_row_or_accepted(caplog, corruption):
    rows, column, kind, index = corruption
    warnings = _warnings(caplog)
    if kind in ("none", *COLUMN_CORRUPTIONS):
        with pytest.raises(ValueError, match=rf"Row {index} of `train_dataset` has .* in `{column}`"):
            check_sft_rows(Dataset.from_list(rows), "train_dataset", "text")
    elif column == "completion" and kind in ("empty", "blank"):
        if len(rows) == 1:
            with pytest.raises(
                ValueError, match=r"1 of 1 rows of `train_dataset` \(row 0\) have a blank `completion`"
            ):
                check_sft_rows(Dataset.from_list(rows), "train_dataset", "text")
        else:
            check_sft_rows(Dataset.from_list(rows), "train_dataset", "text")
            blank = f"1 of {len(rows)} rows of `train_dataset` (row {index}) have a blank `completion`"
            assert warnings == [f"{blank}: they teach nothing."]
    else:  # an empty prompt, long text and special-token text are all text SFT learns from
        check_sft_rows(Dataset.from_list(rows), "train_dataset", "text")
        assert warnings == []


@property_settings
@given(corruption=corruptions(("text",)))
def test_language_modelling_rows_are_refused_by_row_or_accepted(caplog, corruption):
    rows, _, kind, index = corruption
    warnings = _warnings(caplog)
    if kind in ("none", *COLUMN_CORRUPTIONS):
        with pytest.raises(ValueError, match=rf"Row {index} of `train_dataset` has .* in `text`"):
            check_sft_rows(Dataset.from_list(rows), "train_dataset", "text")
    elif kind in ("empty", "blank") and len(rows) == 1:
        with pytest.raises(ValueError, match="nothing to train on"):
            check_sft_rows(Dataset.from_list(rows), "train_dataset", "text")
    else:
        check_sft_rows(Dataset.from_list(rows), "train_dataset", "text")
        assert len(warnings) == (kind in ("empty", "blank"))


@property_settings
@given(corruption=corruptions(("chosen", "rejected")))
def test_preference_pairs_are_refused_by_row_and_column_or_accepted(caplog, corruption):
    rows, column, kind, index = corruption
    warnings = _warnings(caplog)
    same = [i for i, row in enumerate(rows) if row["chosen"] == row["rejected"]]
    if kind in ("none", *COLUMN_CORRUPTIONS):
        with pytest.raises(ValueError, match=rf"Row {index} of `train_dataset` has .* in `{column}`"):
            check_preference_rows(Dataset.from_list(rows), "train_dataset")
    elif len(same) == len(rows):
        with pytest.raises(ValueError, match="have the same `chosen` and `rejected`: there is nothing to train on"):
            check_preference_rows(Dataset.from_list(rows), "train_dataset")
    else:
        check_preference_rows(Dataset.from_list(rows), "train_dataset")
        assert len(warnings) == bool(same)


@property_settings
@given(
    pairs=valid_rows.filter(lambda pairs: all(chosen != rejected for chosen, rejected in pairs)),
    margin=st.one_of(st.none(), st.floats(), st.integers(-10, 10)),
    data=st.data(),
)
def test_a_margin_is_refused_by_row_unless_it_is_a_finite_number(pairs, margin, data):
    index = data.draw(st.integers(0, len(pairs) - 1))
    rows = [{"chosen": chosen, "rejected": rejected, "margin": 0.5} for chosen, rejected in pairs]
    rows[index]["margin"] = margin
    dataset = Dataset.from_list(rows)
    stored = dataset[index]["margin"]  # what Arrow made of it: an integer among floats becomes a float
    if stored is None or stored != stored or abs(stored) == float("inf"):
        with pytest.raises(ValueError, match=rf"Row {index} of `train_dataset` has the margin"):
            check_preference_rows(dataset, "train_dataset")
    else:
        check_preference_rows(dataset, "train_dataset")
