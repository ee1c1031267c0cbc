#!/usr/bin/env bash
# Creates .venv-peer with transformers 4.57.1, the last release with a question-answering
# pipeline: the QA peer of benchmarks/inference.py.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-peer/bin/python ] || python3 -m venv .venv-peer
.venv-peer/bin/python -m pip install -q "${DISTILKIT_TORCH_SPEC:-torch==2.13.0}" "transformers==4.57.1"
.venv-peer/bin/python -c 'import transformers; print("peer environment: transformers", transformers.__version__)'
