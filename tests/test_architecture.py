"""The package's shape: one job per module, no class, function or module grown to do several (see architecture.md)."""

import ast
from pathlib import Path

import pytest


PACKAGE = Path(__file__).resolve().parent.parent / "trl_irl"
MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _is_config_dataclass(node: ast.ClassDef) -> bool:
    # TRL-style config dataclasses repeat every field in their docstring and metadata: long by design
    return node.name.endswith("Config") or node.name.endswith("Arguments")


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_class_or_function_is_too_long(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{path.name} has over {MAX_MODULE_LINES} lines"
    for node in ast.walk(ast.parse(source)):
        length = (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "lineno") else 0
        if isinstance(node, ast.ClassDef) and not _is_config_dataclass(node):
            assert length <= MAX_CLASS_LINES, f"class {node.name} in {path.name} has {length} lines"
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert length <= MAX_FUNCTION_LINES, f"function {node.name} in {path.name} has {length} lines"


def test_the_discriminator_package_knows_nothing_of_trainers():
    for path in (PACKAGE / "discriminator").glob("*.py"):
        imports = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)]
        # Its own modules (one dot) and other packages only: nothing else of trl_irl
        assert all(node.level <= 1 and not (node.module or "").startswith("trl_irl") for node in imports), path.name
