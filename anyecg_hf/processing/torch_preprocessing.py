"""The ECGFounder preprocessing recipe as torch operations, so it runs on the model's device (a GPU job then only
reads files on the CPU). Same numbers as `AnyECGFeatureExtractor` (the numpy/numba path) to float64 round-off.

Why hand-written: no maintained library runs `scipy.signal.filtfilt` / `medfilt` / `resample_poly` with scipy's
exact edge conventions on a GPU (torchaudio's `lfilter` is a per-sample recursion, without `filtfilt`'s odd
extension and steady-state start; its median filter pads differently). Each step is an exact rewrite:

- **zero-phase IIR** (`filtfilt` semantics: odd extension by `padlen`, each pass started from `sosfilt_zi` scaled
  by its first sample). A pass of a linear filter over a finite signal of `M` samples is exactly
  :math:`y = h_{[0,M)} * x + x_0 r` — the causal convolution with the impulse response truncated to `M` samples,
  plus the zero-input response `r` of the cascade started from `sosfilt_zi` — so each pass is one FFT
  convolution (`h`, `r` computed once per length with `scipy.signal.sosfilt`). No recursion, any device.
- **running median** of odd width `k`, zero-padded like `scipy.signal.medfilt`: `unfold` + `median` over rows in
  memory-bounded chunks (the median of an odd count is an element, so the result is the one medfilt picks).
- **z-score**: `global` over present leads x real samples, `per_lead`, or `none`, eps as configured.
- **resampling** (`scipy.signal.resample_poly(..., padtype="line")`): the same Kaiser FIR; each output sample is a
  weighted sum of <= ~21 input samples, gathered by index, with the line extension beyond the ends folded into two
  per-output coefficients (`x_0` and the slope), so only the requested output span is computed.

`TorchPreprocessor(extractor, device)(batch)` takes raw signals already in model lead order and mV (what
`AnyECGFeatureExtractor` holds after its lead selection), at any rate, and returns `input_values` on the device.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from scipy import signal
from scipy.fft import next_fast_len

from . import filters

__all__ = ["TorchPreprocessor", "preprocess_raw_inputs", "torch_filtfilt", "torch_resample", "torch_running_median"]


# ------------------------------------------------------------------------------------------------ zero-phase IIR
@lru_cache(maxsize=32)
def _pass_responses(sos_bytes: bytes, n_sections: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Impulse response `h` and zero-input response `r` (from `sosfilt_zi`) of a SOS cascade, `m` samples each."""
    sos = np.frombuffer(sos_bytes, dtype=np.float64).reshape(n_sections, 6).copy()
    impulse = np.zeros(m)
    impulse[0] = 1.0
    h = signal.sosfilt(sos, impulse)
    r = signal.sosfilt(sos, np.zeros(m), zi=signal.sosfilt_zi(sos))[0]
    return h, r


_SPECTRA: dict = {}


def _spectrum(sos: np.ndarray, m: int, nfft: int, device, dtype):
    """rfft of the impulse response and the zero-input response, on `device` (cached per filter, length, device)."""
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    key = (sos.tobytes(), m, nfft, str(device), dtype)
    hit = _SPECTRA.get(key)
    if hit is None:
        h, r = _pass_responses(key[0], len(sos), m)
        hit = (torch.fft.rfft(torch.as_tensor(h, dtype=dtype, device=device), n=nfft),
               torch.as_tensor(r, dtype=dtype, device=device))
        if len(_SPECTRA) > 64:
            _SPECTRA.clear()
        _SPECTRA[key] = hit
    return hit


def torch_filtfilt(x: torch.Tensor, sos: np.ndarray, padlen: int) -> torch.Tensor:
    """`scipy.signal.sosfiltfilt(sos, x, padtype="odd", padlen=padlen)` along the last axis of `x` (any leading
    shape), computed as two FFT convolutions in `x`'s dtype on `x`'s device (see the module docstring)."""
    n = x.shape[-1]
    if n <= padlen:
        raise ValueError(f"signal of {n} samples is too short for zero-phase filtering (needs > {padlen})")
    left = 2 * x[..., :1] - x[..., 1:padlen + 1].flip(-1)
    right = 2 * x[..., -1:] - x[..., -padlen - 1:-1].flip(-1)
    ext = torch.cat([left, x, right], dim=-1)
    m = ext.shape[-1]
    nfft = _fast_len(2 * m - 1)
    spec, zero_input = _spectrum(sos, m, nfft, x.device, x.dtype)

    def one_pass(v):
        y = torch.fft.irfft(torch.fft.rfft(v, n=nfft) * spec, n=nfft)[..., :m]
        return y + v[..., :1] * zero_input

    y = one_pass(ext).flip(-1)
    return one_pass(y).flip(-1)[..., padlen:padlen + n]


def _fast_len(n: int) -> int:
    return int(next_fast_len(n, real=True))


# ------------------------------------------------------------------------------------------------ running median
def torch_running_median(x: torch.Tensor, kernel_size: int, max_chunk_bytes: int = 1 << 28) -> torch.Tensor:
    """`scipy.signal.medfilt(row, kernel_size)` of every row of `x` (..., N): zero-padded ends, odd width.

    The window view (`unfold`) is materialised `max_chunk_bytes` at a time (256 MiB: 12 leads x 5000 samples x
    201 x 8 bytes is ~100 MB per ECG in float64)."""
    if kernel_size < 1 or kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if kernel_size == 1:
        return x.clone()
    shape, n = x.shape, x.shape[-1]
    rows = x.reshape(-1, n)
    half = kernel_size // 2
    padded = torch.nn.functional.pad(rows, (half, half))
    out = torch.empty_like(rows)
    step = max(1, max_chunk_bytes // max(1, n * kernel_size * rows.element_size()))
    for a in range(0, rows.shape[0], step):
        out[a:a + step] = padded[a:a + step].unfold(-1, kernel_size, 1).median(dim=-1).values
    return out.reshape(shape)


# ------------------------------------------------------------------------------------------------ resampling
@lru_cache(maxsize=64)
def _resample_plan(n_in: int, up: int, down: int, start: int, stop: int):
    """Gather plan of `resample_poly(x, up, down, padtype="line")[start:stop]` for `n_in` input samples:
    `(index (S, K) clamped to [0, n_in), weight (S, K) zero where the index is outside, a0 (S,), a1 (S,))` such
    that `y = sum_k weight * x[index] + a0 * x[0] + a1 * slope`, `slope = (x[-1] - x[0]) / (n_in - 1)`: the
    samples outside the record are the line through its first and last samples (`upfirdn`'s `line` mode)."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * up
    n_pre_pad = down - half_len % down
    h = np.concatenate([np.zeros(n_pre_pad), h])  # the trailing zero-padding scipy may add changes nothing
    n_pre_remove = (half_len + n_pre_pad) // down
    j = np.arange(start, stop) + n_pre_remove  # upfirdn output positions
    # y[j] = sum_i h[j*down - i*up] x[i]  over i with 0 <= j*down - i*up < len(h)
    i_hi = (j * down) // up
    n_taps = len(h) // up + 2
    i = i_hi[:, None] - np.arange(n_taps)[None, :]
    k = j[:, None] * down - i * up
    w = np.where((k >= 0) & (k < len(h)), h[np.clip(k, 0, len(h) - 1)], 0.0)
    inside = (i >= 0) & (i < n_in)
    a0 = np.where(~inside, w, 0.0).sum(axis=1)
    a1 = np.where(~inside, w * i, 0.0).sum(axis=1)
    return np.clip(i, 0, n_in - 1), np.where(inside, w, 0.0), a0, a1


def torch_resample(x: torch.Tensor, fs_in: float, fs_out: float, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Output samples `[start, stop)` of `scipy.signal.resample_poly(x, up, down, axis=-1, padtype="line")` with
    `up / down = fs_out / fs_in` (`filters.rational_ratio`), for every row of `x` (..., N), on `x`'s device."""
    up, down = filters.rational_ratio(fs_in, fs_out)
    n_in = x.shape[-1]
    n_out = math.ceil(n_in * up / down)
    stop = n_out if stop is None else min(stop, n_out)
    if up == down:
        return x[..., start:stop]
    if n_in < 2:
        raise ValueError(f"resampling needs at least 2 samples, got {n_in}")
    index, weight, a0, a1 = (torch.as_tensor(v, device=x.device) for v in _resample_plan(n_in, up, down, start, stop))
    weight, a0, a1 = weight.to(x.dtype), a0.to(x.dtype), a1.to(x.dtype)
    gathered = x[..., index]  # (..., S, K)
    slope = (x[..., -1:] - x[..., :1]) / (n_in - 1)
    return torch.einsum("...sk,sk->...s", gathered, weight) + x[..., :1] * a0 + slope * a1


# ------------------------------------------------------------------------------------------------ the recipe
class TorchPreprocessor:
    """`AnyECGFeatureExtractor`'s resampling, windowing, filtering, baseline removal and z-score on a torch device.

    Args:
        extractor: the `AnyECGFeatureExtractor` whose options (rate, window length and mode, filters, median width,
            normalisation) define the recipe.
        device: where to compute (`"cuda"`, `"cpu"`, ...).
        dtype: compute dtype, float64 by default (the CPU path's precision); float32 halves memory and is faster on
            consumer GPUs, at ~1e-6 of the signal (still far inside the 1e-4 parity tolerance).

    Call it with `x` (B, L, N) raw signals of equal length in the model's lead order and mV (NaN allowed: -> 0),
    one sampling rate `fs` for the batch, and optionally `lead_mask` (B, L) (missing / masked leads: zero output,
    excluded from the z-score). Returns the extractor's outputs as tensors on `device`: `input_values`
    (windows, L, num_samples) float32, `lead_mask` (windows, L), `sample_mask` (windows, num_samples) and
    `window_to_record` (windows,) int64 — one window per record for `first` / `center`, every window for
    `sliding`. On the CPU the numba path of the extractor is much faster (`docs/speed.md`); this one is for GPUs.
    """

    def __init__(self, extractor, device="cpu", dtype: torch.dtype = torch.float64):
        self.extractor = extractor
        self.device = torch.device(device)
        self.dtype = dtype

    def __call__(self, x, fs: float, lead_mask=None) -> dict:
        fe = self.extractor
        x = torch.as_tensor(x).to(self.device, self.dtype)
        if x.ndim != 3:
            raise ValueError(f"expected (batch, leads, samples), got shape {tuple(x.shape)}")
        b, n_leads, n_in = x.shape
        if n_leads != len(fe.lead_names):
            raise ValueError(f"expected {len(fe.lead_names)} leads ({', '.join(fe.lead_names)}), got {n_leads}")
        mask = (torch.ones(b, n_leads, dtype=torch.bool, device=self.device) if lead_mask is None
                else torch.as_tensor(lead_mask, dtype=torch.bool).to(self.device))
        x = torch.nan_to_num(x, nan=0.0) * mask[..., None]
        up, down = filters.rational_ratio(fs, fe.sampling_rate)
        n_total = math.ceil(n_in * up / down)
        starts = fe._window_starts(n_total)
        if len(starts) == 1:
            x = torch_resample(x, fs, fe.sampling_rate, starts[0], min(n_total, starts[0] + fe.num_samples))[:, None]
        else:
            full = torch_resample(x, fs, fe.sampling_rate)
            x = torch.stack([full[..., s:s + fe.num_samples] for s in starts], dim=1)
        n_windows, length = x.shape[1], x.shape[-1]
        x = x.reshape(b * n_windows, n_leads, length)
        mask = mask.repeat_interleave(n_windows, dim=0)
        y = self.normalize(self.filter(x), mask)
        values = torch.full((len(y), n_leads, fe.num_samples), fe.padding_value, dtype=torch.float32, device=self.device)
        values[..., :length] = torch.where(mask[..., None], y, torch.zeros((), dtype=y.dtype, device=self.device)
                                           + fe.padding_value).float()
        sample_mask = torch.zeros(len(y), fe.num_samples, dtype=torch.bool, device=self.device)
        sample_mask[:, :length] = True
        owners = torch.arange(b, device=self.device).repeat_interleave(n_windows)
        return {"input_values": values, "lead_mask": mask, "sample_mask": sample_mask, "window_to_record": owners}

    def filter(self, x: torch.Tensor) -> torch.Tensor:
        """Notch, band-pass (zero-phase) and running-median subtraction of every row of `x` (..., N)."""
        stages, kernel = self.extractor._stages(x.shape[-1])
        for sos, padlen in stages:
            x = torch_filtfilt(x, sos, padlen)
        if kernel is not None:
            x = x - torch_running_median(x, kernel)
        return x

    def normalize(self, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The extractor's z-score (`global` over present leads x samples, `per_lead`, `none`) of `y` (B, L, N)."""
        mode, eps = self.extractor.normalization, self.extractor.normalization_eps
        if mode == "none":
            return y
        w = mask[..., None].to(y.dtype)
        dims = (-1,) if mode == "per_lead" else (-2, -1)
        count = (w.expand_as(y)).sum(dim=dims, keepdim=True).clamp_min(1)
        mean = (y * w).sum(dim=dims, keepdim=True) / count
        std = ((((y - mean) * w) ** 2).sum(dim=dims, keepdim=True) / count).sqrt()
        return (y - mean) / (std + eps)


def preprocess_raw_inputs(raw: list[dict], preprocessor: TorchPreprocessor) -> dict:
    """`AnyECGFeatureExtractor.raw_inputs(...)` of any mix of rates and lengths -> the extractor's batch outputs on
    the preprocessor's device, records in the given order: one `TorchPreprocessor` call per (rate, length) group
    (usually one per batch), windows re-ordered so that each record's windows are contiguous, `window_to_record`
    indexing `raw`."""
    if not raw:
        raise ValueError("no records to preprocess")
    groups: dict = {}
    for j, r in enumerate(raw):
        groups.setdefault((float(r["fs"]), r["x"].shape[-1]), []).append(j)
    parts = []
    for (fs, _), members in groups.items():
        x = torch.from_numpy(np.stack([np.asarray(raw[j]["x"]) for j in members]))  # cast on the device
        mask = torch.from_numpy(np.stack([np.asarray(raw[j]["lead_mask"], dtype=bool) for j in members]))
        out = preprocessor(x, fs, mask)
        out["window_to_record"] = torch.as_tensor(members, device=out["window_to_record"].device)[out["window_to_record"]]
        parts.append(out)
    merged = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    order = torch.sort(merged["window_to_record"], stable=True).indices
    return {k: v[order] for k, v in merged.items()}
