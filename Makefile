# The two commands of the README. Both install everything they need into .venv on first use.
export HF_HUB_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test test-fast lint benchmark mutation notebooks

demo:
	bash scripts/setup.sh demo
	.venv/bin/trl-irl demo

test:
	bash scripts/setup.sh dev
	.venv/bin/ruff check .
	.venv/bin/python -m pytest

# Everyday work: the suite without the `slow` and `distributed` tests (about a minute)
test-fast:
	bash scripts/setup.sh dev
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -m "not slow and not distributed"

lint:
	bash scripts/setup.sh dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

benchmark:
	bash scripts/setup.sh
	.venv/bin/python benchmarks/weighted_sft_benchmark.py

# Mutation testing of the pure functions against their fast unit and property tests (pyproject's [tool.mutmut]);
# `mutmut results` lists the survivors, each explained in docs/testing.md. 478 mutants, about a minute on 2 cores: not in CI
mutation:
	bash scripts/setup.sh dev,mutation
	.venv/bin/mutmut run --max-children 2
	.venv/bin/mutmut results

# Run every notebook on the tiny local models and store it with its outputs (a few minutes on 2 cores)
notebooks:
	bash scripts/setup.sh dev
	.venv/bin/python scripts/run_notebooks.py
