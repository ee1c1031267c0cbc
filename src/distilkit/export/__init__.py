"""Export to ONNX (fp32 or dynamic int8) with a parity check against PyTorch.

onnx, onnxscript and onnxruntime are optional (``pip install 'distilkit[onnx]'``) and imported
only by the functions that need them.
"""

from distilkit.export.onnx import ExportParityError, export_onnx

__all__ = ["ExportParityError", "export_onnx"]
