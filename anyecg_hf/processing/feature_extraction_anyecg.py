"""`AnyECGFeatureExtractor`: raw ECGs of any rate, length, lead set and unit -> the backbone's inputs.

Chain, per record (each step a named, saved option; the defaults are the released ECGFounder recipe):

1. units -> mV; leads canonicalised (`anyecg_hf.leads`) and reordered to `lead_names`; extra leads dropped;
   missing leads, NaN-filled leads (> `nan_lead_fraction` NaN) and flat leads (peak-to-peak <= `flat_threshold`
   mV) are masked (a warning for the last two); remaining NaNs -> 0 (as the reference does).
2. resampling to `sampling_rate` with `scipy.signal.resample_poly` (rational `up/down`, e.g. 500/257), on the raw
   signal, BEFORE any filtering: the filters are then designed at the model's rate, exactly as in training, and
   the polyphase anti-alias FIR precedes the decimation it protects.
3. windowing into `num_samples` samples (`first`, `center` or `sliding` with `window_stride`); each window is then
   preprocessed as an independent record, which is what ECGFounder saw in training (10 s records).
4. per window, vectorised over every lead of every window: 50 Hz notch (Q 30) zero-phase, 4th-order Butterworth
   0.67-40 Hz zero-phase band-pass, baseline removal by subtracting a 0.4 s (201-sample) zero-padded running
   median, then z-score (`global` over present leads x real samples, `per_lead`, or `none`).
5. missing leads zero-filled, short windows zero-padded at the end; `lead_mask` and `sample_mask` say which.
"""

from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Sequence

import numpy as np
from transformers import BatchFeature, SequenceFeatureExtractor

from ..leads import STANDARD_12_LEADS, canonical_lead_names
from . import filters
from .ecg_inputs import ECGInputError, ECGInputParsing, ECGQualityWarning, _to_numpy, units_to_mv  # noqa: F401 (errors importable here)
from .quality import FLAT_PTP_MV, QualityFlag, signal_quality


class AnyECGFeatureExtractor(ECGInputParsing, SequenceFeatureExtractor):
    r"""Turns raw ECGs into `input_values` (batch, leads, samples) float32, `lead_mask` and `sample_mask`.

    Args:
        sampling_rate (`int`, defaults to 500): the model's rate (Hz); inputs are resampled to it.
        num_samples (`int`, defaults to 5000): window length in samples (10 s at 500 Hz).
        lead_names (`list[str]`, defaults to the standard 12 leads): the model's leads, in input-channel order. A
            1-lead model uses `["I"]` (or any other single lead, e.g. `["II"]`).
        units (`str`, defaults to `"mV"`): units of raw arrays when the call gives none (`V`, `mV`, `uV`, `nV`).
        notch_freq (`float` or `None`, defaults to 50.0): mains notch frequency (50 or 60 Hz), `None` for no notch.
        notch_q (`float`, defaults to 30.0): notch quality factor (bandwidth = `notch_freq / notch_q`).
        bandpass_low, bandpass_high (`float` or `None`, defaults to 0.67 and 40.0): Butterworth band edges (Hz);
            one `None` gives a high- or low-pass, both `None` no band-pass.
        filter_order (`int`, defaults to 4): Butterworth order (`scipy.signal.butter(N=filter_order)`).
        baseline (`str`, defaults to `"median"`): `"median"` subtracts a running median of `baseline_window`
            seconds (kernel `int(baseline_window * sampling_rate) + 1`, forced odd, zero-padded at the ends like
            `scipy.signal.medfilt`); `"none"` skips it.
        baseline_window (`float`, defaults to 0.4): running-median length in seconds (201 samples at 500 Hz).
        normalization (`str`, defaults to `"global"`): `"global"` = one z-score over all present leads and real
            samples of a window, :math:`(x-\mu)/(\sigma+\epsilon)` (ECGFounder); `"per_lead"` = one per lead;
            `"none"` = keep millivolts.
        normalization_eps (`float`, defaults to 1e-8): the :math:`\epsilon` above.
        mode (`str`, defaults to `"exact"`): the reference recipe to < 2e-5 (float64, exact running median), the
            only mode: faster approximations missed 1e-3 or gained too little (`docs/processing.md`).
        windowing (`str`, defaults to `"first"`): for records longer than `num_samples`: `"first"` window,
            `"center"` window, or `"sliding"` windows every `window_stride` samples (the last one aligned to the
            record's end so every sample is covered). Shorter records give one zero-padded window.
        window_stride (`int`, *optional*): sliding stride in samples (default `num_samples`, no overlap).
        nan_lead_fraction (`float`, defaults to 0.5): a lead with a larger fraction of NaN is masked, not filled.
        flat_threshold (`float`, defaults to 0.01): a lead with peak-to-peak amplitude (mV) at most this is masked
            as flat; the quality flags call exactly these leads `flat` (e.g. volts read as millivolts).
        padding_value (`float`, defaults to 0.0): value of padded samples and missing leads.
        backend (`str`, defaults to `"auto"`): `"numba"` kernels (parallel, default when installed) or `"scipy"`.
    """

    model_input_names = ["input_values", "lead_mask", "sample_mask"]

    def __init__(
        self,
        sampling_rate: int = 500,
        num_samples: int = 5000,
        lead_names: Sequence[str] = STANDARD_12_LEADS,
        units: str = "mV",
        notch_freq: float | None = 50.0,
        notch_q: float = 30.0,
        bandpass_low: float | None = 0.67,
        bandpass_high: float | None = 40.0,
        filter_order: int = 4,
        baseline: str = "median",
        baseline_window: float = 0.4,
        normalization: str = "global",
        normalization_eps: float = 1e-8,
        mode: str = "exact",
        windowing: str = "first",
        window_stride: int | None = None,
        nan_lead_fraction: float = 0.5,
        flat_threshold: float = FLAT_PTP_MV,
        padding_value: float = 0.0,
        backend: str = "auto",
        **kwargs,
    ):
        kwargs.pop("feature_size", None)
        lead_names = canonical_lead_names(list(lead_names))
        super().__init__(feature_size=len(lead_names), sampling_rate=int(sampling_rate), padding_value=float(padding_value), **kwargs)
        self.num_samples = int(num_samples)
        self.lead_names = lead_names
        self.units = str(units)
        self.notch_freq = None if notch_freq is None else float(notch_freq)
        self.notch_q = float(notch_q)
        self.bandpass_low = None if bandpass_low is None else float(bandpass_low)
        self.bandpass_high = None if bandpass_high is None else float(bandpass_high)
        self.filter_order = int(filter_order)
        self.baseline = baseline
        self.baseline_window = float(baseline_window)
        self.normalization = normalization
        self.normalization_eps = float(normalization_eps)
        self.mode = mode
        self.windowing = windowing
        self.window_stride = None if window_stride is None else int(window_stride)
        self.nan_lead_fraction = float(nan_lead_fraction)
        self.flat_threshold = float(flat_threshold)
        self.backend = backend
        self._validate()

    def _validate(self) -> None:
        choices = {"baseline": ("median", "none"), "normalization": ("global", "per_lead", "none"),
                   "mode": ("exact",), "windowing": ("first", "center", "sliding"), "backend": filters.BACKENDS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.sampling_rate <= 0 or self.num_samples <= 0:
            raise ValueError("sampling_rate and num_samples must be positive")
        if self.window_stride is not None and self.window_stride <= 0:
            raise ValueError("window_stride must be positive")
        units_to_mv(self.units, "AnyECGFeatureExtractor")
        # design once so that an impossible band (e.g. 40 Hz at a 50 Hz model rate) fails at construction
        self._filter_plan()

    @classmethod
    def from_model_config(cls, config, **kwargs) -> AnyECGFeatureExtractor:
        """The extractor matching an `AnyECGConfig` (its `sampling_rate`, `num_samples`, `lead_names`; a 1-lead
        ECGFounder model gets `["I"]`); `kwargs` override any preprocessing option."""
        lead_names = list(getattr(config, "lead_names", STANDARD_12_LEADS))
        in_channels = getattr(config, "in_channels", len(lead_names))
        if len(lead_names) != in_channels:
            lead_names = ["I"] if in_channels == 1 else list(STANDARD_12_LEADS[:in_channels])
        params = dict(sampling_rate=config.sampling_rate, num_samples=config.num_samples, lead_names=lead_names)
        params.update(kwargs)
        return cls(**params)

    def with_windowing(self, windowing: str | None) -> AnyECGFeatureExtractor:
        """This extractor, or a validated copy that cuts long records with `windowing` (`"sliding"`, `"first"`,
        `"center"`; `None` or the same setting: `self`). What the pipelines and `anyecg profile` use for their
        `windowing` option."""
        if windowing is None or windowing == self.windowing:
            return self
        variant = copy.deepcopy(self)
        variant.windowing = windowing
        variant._validate()
        return variant

    def save_pretrained(self, save_directory, push_to_hub=False, **kwargs):
        """transformers' `save_pretrained`, plus this extractor's code and `auto_map` (`anyecg_hf.remote_code`)."""
        try:  # by name: this file also runs as trust_remote_code, where the package may be absent
            remote = importlib.import_module("anyecg_hf.remote_code")
        except ImportError:
            return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        return remote.save_feature_extractor_with_code(self, super().save_pretrained, save_directory, push_to_hub, **kwargs)

    # ------------------------------------------------------------------ filters
    def _filter_plan(self):
        fs = self.sampling_rate
        notch = filters.notch_filter_sos(self.notch_freq, self.notch_q, fs) if self.notch_freq else None
        band = filters.bandpass_sos(self.bandpass_low, self.bandpass_high, self.filter_order, fs)
        kernel = None
        if self.baseline == "median":
            kernel = int(self.baseline_window * fs) + 1
            kernel += 1 - kernel % 2
        return notch, band, kernel

    def filter_rows(self, rows, moments: bool = False):
        """Notch, band-pass and baseline removal of every row of `rows` ((R, T) array or a list of R rows) at
        `sampling_rate`, fused per chunk of rows (`filters.filter_chain`), float64. With `moments=True` also the
        per-row `(sum, sum of squares)` of the result."""
        stages, kernel = self._stages(rows.shape[1] if isinstance(rows, np.ndarray) else len(rows[0]))
        return filters.filter_chain(rows, stages, kernel, self.backend, moments=moments)

    def _stages(self, n: int):
        """`(filter stages, median kernel)` for windows of `n` samples; too short a window is an `ECGInputError`."""
        notch, band, kernel = self._filter_plan()
        stages = [stage for stage in (notch, band) if stage is not None]
        padlen = max([stage[1] for stage in stages], default=0)
        if n <= padlen:
            raise ECGInputError(f"window of {n} samples is too short to filter (needs > {padlen})")
        return stages, kernel


    def _window_starts(self, n_total: int) -> list[int]:
        n = self.num_samples
        if n_total <= n or self.windowing == "first":
            return [0]
        if self.windowing == "center":
            return [(n_total - n) // 2]
        stride = self.window_stride or n
        starts = list(range(0, n_total - n + 1, stride))
        if starts[-1] + n < n_total:
            starts.append(n_total - n)
        return starts

    def _windows(self, x, fs):
        """Resample (polyphase, raw signal) and cut windows; returns a list of (L, <= num_samples) arrays."""
        target = self.sampling_rate
        up, down = filters.rational_ratio(fs, target)
        n_total = math.ceil(x.shape[1] * up / down)
        starts = self._window_starts(n_total)
        if len(starts) > 1:
            full = filters.resample(x, fs, target)
            return [full[:, s:s + self.num_samples] for s in starts]
        s = starts[0]
        return [filters.resample_span(x, fs, target, s, min(n_total, s + self.num_samples))]

    # ------------------------------------------------------------------ main entry
    def __call__(
        self,
        signals,
        sampling_rate: float | Sequence[float] | None = None,
        lead_names: Sequence[str] | None = None,
        units: str | Sequence[str] | None = None,
        return_tensors: str | None = None,
        return_window_index: bool = False,
        record_ids: Sequence[str] | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Preprocess one or more ECGs.

        Args:
            signals: one `(leads, samples)` array (numpy or torch), a `(batch, leads, samples)` array, a list of
                such arrays (lengths may differ), or objects with `signal`, `sampling_rate`, `lead_names`, `units`
                and `record_id`/`source` attributes (`anyecg_hf.io.ECGRecord`). A 1-D array is one lead. Arrays are
                never transposed: a `(samples, leads)` array raises an error saying to pass `signal.T`.
            sampling_rate: Hz, one for all records or one per record. Required for arrays (no default: a wrong rate
                silently changes every prediction); records carry their own.
            lead_names: names of the rows (any alias of `anyecg_hf.leads`), shared or one list per record; default
                the extractor's `lead_names` when the row count matches.
            units: `V`, `mV`, `uV` or `nV` (or one per lead) of arrays; default `self.units`.
            return_tensors: `"pt"`, `"np"` or `None` (numpy).
            return_window_index: also return `window_to_record` (window -> index of its record), needed to
                aggregate `sliding` windows. It is bookkeeping, not a model input: pop it before `model(**batch)`.
            record_ids: names used in error messages (default `record <i>` or the record's own id).

        Returns:
            `BatchFeature` with `input_values` (windows, leads, num_samples) float32, `lead_mask` (windows, leads)
            bool, `sample_mask` (windows, num_samples) bool and, when asked, `window_to_record` (windows,) int64.

        Raises:
            ECGInputError (a `ValueError`): empty signal, unknown/inverted lead names, missing or non-positive
            sampling rate, a shape matching neither layout, or a record with no usable lead.
        """
        records = self._as_records(signals, sampling_rate, lead_names, units, record_ids)
        windows, masks, owners = [], [], []
        for i, rec in enumerate(records):
            x, mask = self._select_leads(rec)
            for w in self._windows(x, rec["fs"]):
                windows.append(w)
                masks.append(mask)
                owners.append(i)
        values, sample_mask = self._process_windows(windows, np.array(masks), [r["id"] for r in records], owners)
        data = {"input_values": values, "lead_mask": np.array(masks, dtype=bool), "sample_mask": sample_mask}
        if return_window_index:
            data["window_to_record"] = np.asarray(owners, dtype=np.int64)
        return BatchFeature(data, tensor_type=return_tensors)

    def raw_inputs(self, signals, sampling_rate=None, lead_names=None, units=None, record_ids=None) -> list[dict]:
        """Step 1 of the chain only (parsing, units -> mV, model lead order, masks and their warnings, NaN -> 0),
        per record: what `processing.torch_preprocessing.TorchPreprocessor` takes, so that a GPU job's readers do
        no filtering. Same arguments and errors as `__call__`.

        Returns:
            one dict per record: `x` (leads, samples) float64 in the model's lead order (zeros for masked leads),
            `lead_mask` (leads,) bool, `fs` (Hz) and `id`.
        """
        out = []
        for rec in self._as_records(signals, sampling_rate, lead_names, units, record_ids):
            x, mask = self._select_leads(rec)
            out.append({"x": x, "lead_mask": mask, "fs": rec["fs"], "id": rec["id"]})
        return out

    def _process_windows(self, windows, lead_mask, ids, owners):
        n_w, n_l, n = len(windows), len(self.lead_names), self.num_samples
        values = np.full((n_w, n_l, n), self.padding_value, dtype=np.float32)
        sample_mask = np.zeros((n_w, n), dtype=bool)
        lengths = np.array([w.shape[1] for w in windows])
        for length in np.unique(lengths):  # one vectorised pass per distinct length (usually exactly one)
            idx = np.flatnonzero(lengths == length)
            w_of_row, l_of_row = np.nonzero(lead_mask[idx])  # present leads only, window-major
            # views into the windows: the worker threads gather, filter, normalise and write them chunk by chunk
            src = [windows[w][lead] for w, lead in zip(idx[w_of_row], l_of_row)]
            dest = idx[w_of_row] * n_l + l_of_row
            try:
                if filters.HAVE_NUMBA and self.backend != "scipy":
                    self._process_in_chunks(src, w_of_row, dest, length, values.reshape(n_w * n_l, n))
                else:
                    rows, (total, total_sq) = self.filter_rows(src, moments=True)
                    mean, inv = self._zscore(total, total_sq, length, w_of_row, len(idx))
                    filters.scale_rows_into(rows, mean, inv, values.reshape(n_w * n_l, n), dest)
            except ECGInputError as err:
                raise ECGInputError(f"{ids[owners[idx[0]]]}: {err}") from None
            sample_mask[idx, :length] = True
        return values, sample_mask

    def _process_in_chunks(self, src, window_of_row, dest, length, out2d):
        """Chunks of whole windows (~48 rows) on the worker threads: gather, filter, subtract the median, z-score
        and write float32 into `out2d` while the chunk is in cache (no batch-sized float64 intermediate)."""
        stages, kernel = self._stages(length)
        starts = np.flatnonzero(np.r_[True, window_of_row[1:] != window_of_row[:-1]])  # first row of each window
        bounds, a = [], 0
        for s in starts[1:]:
            if s - a >= 48:
                bounds.append((a, int(s)))
                a = int(s)
        bounds.append((a, len(src)))
        _kernels = filters._kernels  # present: this path runs only with numba (see filters.HAVE_NUMBA)

        def run(a: int, b: int) -> None:
            buf = np.empty((b - a, length))
            filters.filter_chunk(src[a:b], buf, stages, kernel)
            total, total_sq = np.empty(b - a), np.empty(b - a)
            _kernels.row_moments(buf, total, total_sq)
            local = window_of_row[a:b] - window_of_row[a]
            mean, inv = self._zscore(total, total_sq, length, local, int(local[-1]) + 1)
            _kernels.scale_rows_into(buf, mean, inv, out2d, np.ascontiguousarray(dest[a:b], dtype=np.int64))

        filters.for_ranges(run, bounds)

    def _zscore(self, total, total_sq, length, window_of_row, n_windows):
        """Per-row `(mean, 1 / (std + eps))` of the z-score from per-row sums over `length` samples: `global` pools
        the rows of each window (missing leads never enter the statistics), `per_lead` uses each row alone, `none`
        is the identity.

        .. math:: \\mu = \\frac{1}{n}\\sum x, \\quad \\sigma = \\sqrt{\\frac{1}{n}\\sum x^2 - \\mu^2},
            \\quad x \\leftarrow (x - \\mu) / (\\sigma + \\epsilon)
        """
        if self.normalization == "none":
            return np.zeros(len(total)), np.ones(len(total))
        count = np.full(len(total), float(length))
        if self.normalization == "global":
            total, total_sq, count = (np.bincount(window_of_row, v, n_windows)[window_of_row]
                                      for v in (total, total_sq, count))
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        return mean, 1.0 / (std + self.normalization_eps)

    # ------------------------------------------------------------------ extras
    def check_quality(self, signals, sampling_rate=None, lead_names=None, units=None, record_ids=None) -> list[list]:
        """Signal-quality flags (`anyecg_hf.processing.quality.signal_quality`) of each record, parsed exactly as
        `__call__` parses them; one list of `QualityFlag` per record (empty = clean)."""
        records = self._as_records(signals, sampling_rate, lead_names, units, record_ids)
        flags: list = [None] * len(records)

        def check(a: int, b: int) -> None:  # one record per task, on the filters' worker threads
            for i in range(a, b):
                r = records[i]
                flags[i] = signal_quality(r["x"], r["fs"], r["names"], 1.0, r["id"], flat_threshold=self.flat_threshold,
                                          nan_fraction=self.nan_lead_fraction) + self._input_flags(r)

        filters.for_ranges(check, [(i, i + 1) for i in range(len(records))])
        return flags

    def _input_flags(self, r) -> list:
        """Flags about what the model will see of this record: model leads absent from it (zero-filled, masked)
        and a record shorter than 90 % of the model's window (zero-padded): both shift outputs (by up to 0.15 on
        the reference model for 1-3 leads or 2 s) without being wrong input."""
        where = f"{r['id']}: " if r["id"] else ""
        out = []
        missing = [n for n in self.lead_names if n not in r["names"]]
        if missing and len(self.lead_names) > 1:
            out.append(QualityFlag("missing_leads", None, float(len(missing)),
                                   f"{where}{len(missing)} of the model's {len(self.lead_names)} leads are missing "
                                   f"({', '.join(missing)}): zero-filled and masked; outputs are less reliable"))
        seconds, window = r["x"].shape[1] / r["fs"], self.num_samples / self.sampling_rate
        if seconds < 0.9 * window:
            out.append(QualityFlag("shorter_than_window", None, seconds,
                                   f"{where}the record is {seconds:.3g} s long, the model's window {window:g} s: "
                                   f"{1 - seconds / window:.0%} of it is zero padding; outputs are less reliable"))
        return out

    def pad(self, processed_features, padding=True, max_length=None, return_tensors=None, **kwargs) -> BatchFeature:
        """Pad `(leads, samples)` arrays along the LAST axis (the base class assumes time-first) to `max_length`
        (default: `num_samples`), with `sample_mask`. Accepts a list of arrays or a dict/BatchFeature holding
        `input_values` as such a list."""
        feats = processed_features
        extra = {}
        if isinstance(feats, (dict, BatchFeature)):
            extra = {k: v for k, v in feats.items() if k not in ("input_values", "sample_mask")}
            feats = feats["input_values"]
        arrays = [_to_numpy(f).astype(np.float32) for f in feats]
        n = max_length or max(self.num_samples, *(a.shape[-1] for a in arrays))
        values = np.full((len(arrays), arrays[0].shape[0], n), self.padding_value, dtype=np.float32)
        mask = np.zeros((len(arrays), n), dtype=bool)
        for i, a in enumerate(arrays):
            t = min(n, a.shape[-1])
            values[i, :, :t] = a[:, :t]
            mask[i, :t] = True
        return BatchFeature({"input_values": values, "sample_mask": mask, **extra}, tensor_type=return_tensors)


