"""
The package's shape: the discriminator package knows nothing of trainers, and no module, class or function has grown
past bounds that only a runaway reaches. The bounds are a prompt, not the rule: the rule is one job per module (see
docs/architecture.md), and code is never moved only to fit under them.
"""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest


PACKAGE = Path(__file__).resolve().parent.parent / "trl_irl"
MAX_MODULE_LINES = 700
MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 120


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _is_config_dataclass(node: ast.ClassDef) -> bool:
    # TRL-style config dataclasses repeat every field in their docstring and metadata: long by design
    return node.name.endswith("Config") or node.name.endswith("Arguments")


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_class_or_function_is_too_long(path):
    source = path.read_text()
    too_long = f"{path.name} has over {MAX_MODULE_LINES} lines: does it do more than one job?"
    assert len(source.splitlines()) <= MAX_MODULE_LINES, too_long
    for node in ast.walk(ast.parse(source)):
        length = (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "lineno") else 0
        if isinstance(node, ast.ClassDef) and not _is_config_dataclass(node):
            assert length <= MAX_CLASS_LINES, f"class {node.name} in {path.name} has {length} lines"
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert length <= MAX_FUNCTION_LINES, f"function {node.name} in {path.name} has {length} lines"


# Modules that import nothing of the package, which any part of it may use
LEAF_MODULES = ("log_probs", "lazy_exports")


def _package_imports(path: Path) -> list[ast.ImportFrom]:
    """The `from` imports of `path` that reach into trl_irl (relative, or by name)."""
    imports = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)]
    return [node for node in imports if node.level > 0 or (node.module or "").startswith("trl_irl")]


def test_the_discriminator_package_knows_nothing_of_trainers():
    for path in (PACKAGE / "discriminator").glob("*.py"):
        # Its own modules (one dot) and the leaf modules (two): nothing else of trl_irl
        for node in _package_imports(path):
            own = node.level == 1
            assert own or (node.level == 2 and node.module in LEAF_MODULES), f"{path.name} imports {node.module}"


@pytest.mark.parametrize("name", LEAF_MODULES)
def test_leaf_modules_import_nothing_of_the_package(name):
    assert _package_imports(PACKAGE / f"{name}.py") == []


def test_the_configs_import_none_of_the_runtime():
    # A config is what `trl-irl`'s argument parser reads: the pure modules its choices come from, nothing that trains
    code = (
        "import sys; from trl_irl import AIRLConfig, GAILConfig, VarianceRewardConfig, WeightedSFTConfig; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('trl_irl'))))"
    )
    imported = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    pure = {"trl_irl", "trl_irl.lazy_exports", "trl_irl.trainer", "trl_irl.divergences", "trl_irl.token_weighting"}
    assert {name for name in imported - pure if not name.endswith("_config")} == set()


def test_the_config_offers_the_choices_its_parts_take():
    from trl_irl.discriminator.losses import LOSSES
    from trl_irl.rewards import SCORINGS
    from trl_irl.trainer.gail_config import DISCRIMINATOR_LOSSES, DISCRIMINATOR_SCORINGS

    assert DISCRIMINATOR_SCORINGS == SCORINGS
    assert DISCRIMINATOR_LOSSES == tuple(LOSSES)


@pytest.mark.parametrize("package", ["trl_irl", "trl_irl.trainer"])
def test_every_lazy_export_is_listed_and_importable(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(module._EXPORTS)
    assert all(getattr(module, name) is not None for name in module.__all__)


def _modules_named_in_the_architecture_doc() -> set[str]:
    """The module paths that docs/architecture.md's tree names: a folder line ends in `/`, a module line in `.py`."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    tree = doc.split("## The modules", 1)[1].split("```", 2)[1]
    named, folders = set(), []
    for line in tree.splitlines():
        entry = line.strip().split(" ", 1)[0] if line.strip() else ""
        depth = (len(line) - len(line.lstrip())) // 2
        if entry.endswith("/"):
            folders = [*folders[:depth], entry]
        elif entry.endswith(".py") and folders and folders[0] == "trl_irl/":
            named.add("".join(folders[1:depth]) + entry)
    return named


def test_the_architecture_doc_names_every_module_and_no_other():
    modules = {str(path.relative_to(PACKAGE)) for path in _modules()}
    assert _modules_named_in_the_architecture_doc() == modules


def test_only_the_demo_command_imports_the_benchmark_harness():
    # The harness is the demo's library code (its dependencies are the `demo` extra): no trainer or part needs it
    for path in _modules():
        if path.parent.name == "benchmark" or path.name == "cli.py":
            continue
        modules = [(node.level, node.module or "") for node in _package_imports(path)]
        assert not any("benchmark" in module for _, module in modules), path.name
