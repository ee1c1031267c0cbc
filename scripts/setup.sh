#!/usr/bin/env bash
# Creates .venv (if missing) and installs distilkit with its test extras into it.
# torch is pinned to the CPU build that ships with this project's machines; set
# DISTILKIT_TORCH_SPEC (e.g. "torch>=2.4") to install another build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q "${DISTILKIT_TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[dev]"
echo "distilkit installed in .venv ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
