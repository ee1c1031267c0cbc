#!/usr/bin/env bash
# Creates .venv-rt with the CPU runtimes distilkit is compared with in benchmarks/runtimes.py:
# optimum's ONNX Runtime models and optimum-intel's OpenVINO models (with NNCF for int8).
# A separate environment because optimum pins transformers < 4.58, older than distilkit's.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-rt/bin/python ] || python3 -m venv .venv-rt
.venv-rt/bin/python -m pip install -q "${DISTILKIT_TORCH_SPEC:-torch==2.13.0}" \
    "optimum==2.1.0" "optimum-onnx[onnxruntime]==0.1.0" "optimum-intel[openvino,nncf]==1.27.0" \
    "openvino==2026.4.1" "nncf==3.4.0" "onnxruntime==1.32.0"
.venv-rt/bin/python -c 'import optimum.intel, optimum.onnxruntime, openvino, nncf; print("runtimes peers ready")'
