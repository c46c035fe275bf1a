"""How the model runs on this machine: CPU threads (`configure_cpu_threads()`: one PyTorch intra-op thread per
available core, see `docs/speed.md`), device and precision. ONNX export and the ONNX Runtime wrapper are in
`anyecg_hf.export`.
"""

from __future__ import annotations

from .threads import available_cpus, configure_cpu_threads, default_num_threads

__all__ = ["available_cpus", "configure_cpu_threads", "default_num_threads"]
