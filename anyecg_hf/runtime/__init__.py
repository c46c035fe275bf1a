"""Fast inference runtimes: CPU thread settings, ONNX export and an ONNX Runtime model wrapper.

- `configure_cpu_threads()`: one PyTorch intra-op thread per available core (see `docs/speed.md`).
- `export_onnx(model, path)`: a single `.onnx` file with dynamic batch (and length); `anyecg export-onnx` wraps it.
- `OnnxECGModel(path)`: runs that file on ONNX Runtime and returns the PyTorch model's output class.
- `resolve_precision(precision, device)` / `autocast(dtype, device)` (`runtime/precision.py`): `--precision`.

ONNX pieces need the `onnx` extra (`pip install 'anyecg_hf[onnx]'`) and are imported on first use.
"""

from __future__ import annotations

import importlib

from .threads import available_cpus, configure_cpu_threads, default_num_threads

_LAZY = {"export_onnx": ".onnx", "OnnxECGModel": ".onnx", "ONNXExportError": ".onnx",
         "resolve_precision": ".precision", "autocast": ".precision", "precision_label": ".precision"}

__all__ = ["ONNXExportError", "OnnxECGModel", "autocast", "available_cpus", "configure_cpu_threads", "default_num_threads",
           "export_onnx", "precision_label", "resolve_precision"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
