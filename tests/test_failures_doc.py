"""docs/failures.md: every row names tests that exist, and every row number is used once."""

import re
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
FAILURES = (ROOT / "docs" / "failures.md").read_text()
# `test_file::Class::test_name[parameters]` or, after a first one in the same cell, `test_name`
REFERENCE = re.compile(r"`(test_[a-z0-9_*]+)::([A-Za-z0-9_:]+)(?:\[[^\]]*\])?`|`(test_[a-z0-9_]+)`")


def _rows() -> list[list[str]]:
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        for line in FAILURES.splitlines()
        if re.match(r"^\| \d+ \|", line)
    ]


def test_every_row_number_is_used_once():
    numbers = [int(row[0]) for row in _rows()]
    assert sorted(numbers) == list(range(1, max(numbers) + 1))


def test_every_test_a_row_names_exists():
    missing = []
    for row in _rows():
        test_file = None
        for match in REFERENCE.finditer(row[-1]):
            if match.group(1):
                test_file, path = match.group(1), match.group(2)
                name = path.split("::")[-1]
            else:
                name = match.group(3)
            if test_file is None or "*" in test_file:  # `test_*::name` stands for one test in several files
                files = sorted((ROOT / "tests").glob("test_*.py"))
            else:
                files = [ROOT / "tests" / f"{test_file}.py"]
            defined = re.compile(rf"(def|class) {re.escape(name)}\b")
            if not any(f.is_file() and defined.search(f.read_text()) for f in files):
                missing.append(f"row {row[0]}: {test_file}::{name}")
    assert missing == []
