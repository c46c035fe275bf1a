"""How the model runs on this machine: CPU threads (`configure_cpu_threads()`: one PyTorch intra-op thread per
available core, see `docs/speed.md`) and precision (`resolve_precision(precision, device)` / `autocast(dtype,
device)` in `runtime/precision.py`: `--precision`). ONNX export and the ONNX Runtime model are in
`anyecg_hf.export`.
"""

from __future__ import annotations

from ..lazy import lazy_getattr
from .threads import available_cpus, configure_cpu_threads, default_num_threads

_LAZY = {"resolve_precision": ".precision", "autocast": ".precision", "precision_label": ".precision"}

__all__ = ["autocast", "available_cpus", "configure_cpu_threads", "default_num_threads", "precision_label",
           "resolve_precision"]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
