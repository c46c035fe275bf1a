"""Compute precision: which dtype the model runs in on this machine, and the one context manager that applies it.

Float32 is the default everywhere: it is the precision the parity promise is made in. Reduced precision is opt-in
(`--precision bf16|fp16|auto`, `precision=` of the pipelines) and runs the model under `torch.autocast`, so the
weights stay float32 and the convolutions / matmuls run in the reduced type (oneDNN's bf16 kernels on CPUs with
AVX512-BF16 or AMX, tensor cores on GPUs). `auto` picks bfloat16 only where the hardware computes it natively and
never an emulated path, which on a CPU without those instructions is several times SLOWER than float32:

- CPU: the `avx512_bf16` or `amx_bf16` flag (x86; from `/proc/cpuinfo`, else PyTorch's own cpuinfo probe) or
  `bf16` (Arm, e.g. Graviton 3 / Neoverse V1);
- CUDA: compute capability >= 8.0 (Ampere and later);
- anything else: float32.

float16 on a CPU is refused unless the CPU has native float16 arithmetic (`amx_fp16` / `avx512_fp16`): PyTorch
would otherwise emulate it, slowly, with float16's narrow range on top. The agreement of each reduced path with
float32 on the parity weights is printed by `benchmarks/bench_precision.py` and stated in `docs/speed.md`.

Output rows and files record the precision actually used (`precision_label(dtype)`: `"fp32"`, `"bf16"`, `"fp16"`).

Importing this module does not import torch (the command-line parsers use `add_precision_argument`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import warnings
from pathlib import Path

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_ALIASES = {
    "fp32": "fp32", "float32": "fp32", "float": "fp32", "32": "fp32", "no": "fp32",
    "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16", "half": "fp16", "16": "fp16",
    "auto": "auto",
}
_DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16"}


def _dtype(name: str):
    import torch

    return getattr(torch, _DTYPE_NAMES[name])


def normalize_precision(precision) -> str:
    """`"fp32"`, `"bf16"`, `"fp16"` or `"auto"` from any accepted spelling (`float32`, `bfloat16`, `float16`,
    `half`, a `torch.dtype`, or `None` = fp32)."""
    if precision is None:
        return "fp32"
    key = str(precision).strip().lower().removeprefix("torch.")  # torch.bfloat16 -> "bfloat16"
    if key not in _ALIASES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (or float32 / bfloat16 / float16), "
                         f"got {precision!r}")
    return _ALIASES[key]


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """Feature flags of this CPU: the `flags` (x86) or `Features` (Arm) line of `/proc/cpuinfo`, plus what
    PyTorch's cpuinfo probe reports (the only source off Linux)."""
    import torch

    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                flags.update(value.split())
                break
    except OSError:
        pass
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_tile": "_is_amx_tile_supported",
              "amx_fp16": "_is_amx_fp16_supported"}
    for flag, probe in probes.items():
        try:
            if getattr(torch.cpu, probe)():
                flags.add(flag)
        except (AttributeError, RuntimeError):  # older torch / a build without the probe
            pass
    return frozenset(flags)


def _device(device):
    import torch

    return device if isinstance(device, torch.device) else torch.device(device or "cpu")


def native_bf16(device="cpu") -> bool:
    """True when `device` computes bfloat16 natively (see the module docstring for the rule)."""
    device = _device(device)
    if device.type == "cpu":
        return bool(cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})
    if device.type == "cuda":
        import torch

        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    return False


def native_fp16(device="cpu") -> bool:
    """True when `device` computes float16 natively: CPUs with AMX-FP16 or AVX512-FP16, CUDA capability >= 7.0
    (tensor cores)."""
    device = _device(device)
    if device.type == "cpu":
        return bool(cpu_flags() & {"amx_fp16", "avx512_fp16"})
    if device.type == "cuda":
        import torch

        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 7
    return device.type == "mps"


def resolve_precision(precision, device="cpu") -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`, or `None` for float32 (no autocast).

    Args:
        precision: `"fp32"`, `"bf16"`, `"fp16"`, `"auto"` (or `float32` / `bfloat16` / `float16`, a `torch.dtype`,
            `None` = fp32).
        device: `"cpu"`, `"cuda"`, `"cuda:1"`, a `torch.device`.

    Returns:
        `torch.bfloat16`, `torch.float16` or `None`. `auto` gives bfloat16 where `native_bf16(device)`, else `None`.

    Raises:
        ValueError: an unknown precision, or fp16 on a CPU without native float16 (the message says what to use).

    An explicit `bf16` on hardware without native bfloat16 is honoured (the user asked for it) with a warning that
    it is emulated and slower than float32.
    """
    name = normalize_precision(precision)
    device = _device(device)
    if name == "fp32":
        return None
    if name == "auto":
        return _dtype("bf16") if native_bf16(device) else None
    if name == "fp16" and device.type == "cpu" and not native_fp16(device):
        raise ValueError("precision fp16 on this CPU: it has no native float16 arithmetic (no amx_fp16 / "
                         "avx512_fp16), so PyTorch would emulate it, slowly and with float16's narrow range; use "
                         "--precision bf16 (native here)" if native_bf16(device) else
                         "precision fp16 on this CPU: it has no native float16 arithmetic (no amx_fp16 / "
                         "avx512_fp16); use --precision fp32 (this CPU has no native bfloat16 either)")
    if name == "bf16" and not native_bf16(device) and device.type in ("cpu", "cuda"):
        warnings.warn(f"precision bf16 on {device}: no native bfloat16 here (CPU flags avx512_bf16 / amx_bf16, or "
                      "CUDA capability >= 8.0), so it is emulated and likely slower than fp32", RuntimeWarning,
                      stacklevel=2)
    return _dtype(name)


def precision_dtype(label: str) -> torch.dtype | None:
    """The autocast dtype of an already resolved label (`"fp32"` -> None, `"bf16"`, `"fp16"`), without checks."""
    name = normalize_precision(label)
    return None if name == "fp32" else _dtype(name)


def precision_label(dtype: torch.dtype | None) -> str:
    """`"fp32"` for `None` / float32, `"bf16"`, `"fp16"`: the value written to output rows and reports."""
    return normalize_precision(dtype)


def autocast(dtype: torch.dtype | None, device="cpu"):
    """THE context manager the model runs under: `torch.autocast(device.type, dtype)` for a reduced `dtype`, a
    no-op for `None` (float32). `dtype` comes from `resolve_precision`."""
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(_device(device).type, dtype=dtype)


# ------------------------------------------------------------------------------------------------- command line
_DTYPE_ALIAS = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def add_precision_argument(parser: argparse.ArgumentParser, default: str = "fp32") -> None:
    """`--precision {fp32,bf16,fp16,auto}` and the deprecated `--dtype {float32,bfloat16,float16}` alias (hidden
    from --help). Read the result with `precision_from_args(args)`."""
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help=f"compute precision (default {default}): bf16 / fp16 run the model under autocast; "
                             "auto = bf16 where the CPU (avx512_bf16 / amx_bf16) or GPU (capability >= 8.0) has it "
                             "natively, else fp32. The precision used is recorded in the output.")
    parser.add_argument("--dtype", choices=tuple(_DTYPE_ALIAS), default=None, help=argparse.SUPPRESS)
    parser.set_defaults(_precision_default=default)


def precision_from_args(args: argparse.Namespace) -> str:
    """The `--precision` choice, or the deprecated `--dtype` mapped onto it (with a note on stderr)."""
    precision, dtype = getattr(args, "precision", None), getattr(args, "dtype", None)
    if dtype is not None:
        mapped = _DTYPE_ALIAS[dtype]
        if precision is not None and precision != mapped:
            raise SystemExit(f"error: --dtype {dtype} (deprecated) contradicts --precision {precision}; "
                             "use --precision only")
        print(f"note: --dtype is deprecated; use --precision {mapped}", file=sys.stderr)
        return mapped
    return precision or getattr(args, "_precision_default", "fp32")


def accelerate_mixed_precision(precision, device=None) -> str:
    """Accelerate's `mixed_precision` value (`"no"`, `"bf16"`, `"fp16"`) for `precision` (`"no"` = fp32, `"auto"`,
    ...) on `device` (default: CUDA when available, else CPU), by the same rules: a recipe's `mixed_precision: auto`
    trains in bf16 on GPUs from Ampere on and on CPUs with native bf16, in fp32 elsewhere."""
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"fp32": "no"}.get(label := precision_label(resolve_precision(precision, device)), label)
