"""Exporting a model for other runtimes: ONNX (`export_onnx`, `anyecg export-onnx`) and `OnnxECGModel`, which runs
the exported file on ONNX Runtime and returns the PyTorch model's output class (the pipelines' `onnx_model=`).

ONNX pieces need the `onnx` extra (`pip install -e ".[onnx]"` in the anyecg_hf clone) and are imported on first use.
"""

from __future__ import annotations

from ..lazy import lazy_getattr

_LAZY = {"export_onnx": ".onnx", "OnnxECGModel": ".onnx", "ONNXExportError": ".onnx", "min_export_samples": ".onnx"}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
