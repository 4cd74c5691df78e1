#!/usr/bin/env bash
# Creates .venv and installs trl-irl into it (editable), with the extras named in $1 (for example "dev").
# Idempotent: a second run with an unchanged pyproject.toml does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
python="${PYTHON:-python3}"
venv=".venv"
stamp="$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${extras:-none}"

if [ -f "$stamp" ]; then
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

# torch first: left to the resolver, a bare `torch` requirement pulls a multi-GB CUDA build. Without a GPU, the CPU
# build of the pinned release is what we want (and what this workplace keeps on local disk).
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        "$venv/bin/pip" install --quiet "torch>=2.6"
    else
        "$venv/bin/pip" install --quiet "torch==2.13.0"
    fi
fi

if [ -n "$extras" ]; then
    "$venv/bin/pip" install --quiet -e ".[$extras]"
else
    "$venv/bin/pip" install --quiet -e .
fi
rm -f "$venv"/.installed-*
touch "$stamp"
