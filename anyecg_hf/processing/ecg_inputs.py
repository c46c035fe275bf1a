"""What the feature extractor accepts as ECGs: records, `(leads, samples)` arrays or lists of them with their
sampling rates, lead names and units, parsed into one form; the lead selection and reordering onto the model's leads
(with a warning for each lead masked); and the input errors (`ECGInputError`) that name the record and the problem.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..leads import canonical_lead_names
from ..io.plausibility import ImplausibleECG, check_rate
from . import filters

UNIT_SCALE_TO_MV = {"v": 1e3, "mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "nv": 1e-6}


class ECGInputError(ValueError):
    """Raised for input the feature extractor cannot turn into model inputs; the message names the record."""


class ECGQualityWarning(UserWarning):
    """Issued when a lead is masked because it is flat or NaN-filled."""


def units_to_mv(units: str, where: str = "record") -> float:
    """Scale factor from `units` (`V`, `mV`, `uV`/`µV`, `nV`, case-insensitive) to millivolts."""
    key = str(units).strip().lower().replace("micro", "u").replace("milli", "m")
    key = {"volt": "v", "volts": "v", "millivolt": "mv", "microvolt": "uv", "nanovolt": "nv"}.get(key, key)
    if key not in UNIT_SCALE_TO_MV:
        raise ECGInputError(f"{where}: unknown units {units!r}; use one of V, mV, uV, nV")
    return UNIT_SCALE_TO_MV[key]


class ECGInputParsing:
    """The input side of `AnyECGFeatureExtractor` (it uses the extractor's `lead_names`, `units`, `nan_lead_fraction`,
    `flat_threshold`)."""

    # ------------------------------------------------------------------ input parsing
    def _as_records(self, signals, sampling_rate, lead_names, units, record_ids):
        if hasattr(signals, "signal"):
            items = [signals]
        elif _is_array(signals):
            arr = _to_numpy(signals)
            items = list(arr) if arr.ndim == 3 else [arr]
        elif isinstance(signals, (list, tuple)):
            if len(signals) == 0:
                raise ECGInputError("no ECG given (empty list)")
            if all(hasattr(s, "signal") or _is_array(s) for s in signals):
                items = list(signals)
            else:
                items = [np.asarray(signals, dtype=np.float64)]
        else:
            raise ECGInputError(f"signals must be an array, a list of arrays or ECGRecord objects, got {type(signals).__name__}")
        n = len(items)
        rates = _per_record(sampling_rate, n, "sampling_rate")
        names = lead_names if lead_names is None or (len(lead_names) and isinstance(lead_names[0], str)) else None
        per_names = _per_record(lead_names, n, "lead_names") if names is None and lead_names is not None else [names] * n
        ids = _per_record(record_ids, n, "record_ids")
        records = []
        for i, item in enumerate(items):
            rec_units = units
            if hasattr(item, "signal"):
                rid = getattr(item, "record_id", None) or getattr(item, "source", None) or ids[i] or f"record {i}"
                sig = item.signal
                fs = _first_given(getattr(item, "sampling_rate", None), rates[i])
                nm = _first_given(getattr(item, "lead_names", None), per_names[i])
                rec_units = _first_given(getattr(item, "units", None), units)
            else:
                rid, sig, fs, nm = ids[i] or f"record {i}", item, rates[i], per_names[i]
            records.append(self._parse_record(sig, fs, nm, rec_units, str(rid)))
        return records

    def _parse_record(self, sig, fs, names, units, rid):
        x = _to_numpy(sig)
        if x.dtype.kind not in "fiub":
            raise ECGInputError(f"{rid}: signal must be numeric, got dtype {x.dtype}")
        x = np.asarray(x, dtype=np.float64)  # no copy for float64 input: later steps never write into it
        if x.size == 0:
            raise ECGInputError(f"{rid}: empty signal (shape {x.shape})")
        if fs is None:
            raise ECGInputError(f"{rid}: sampling_rate is missing; give it (sampling_rate=<Hz>, e.g. 500; --sampling-rate HZ "
                                       "on the anyecg command line)")
        try:
            fs = float(fs)
        except (TypeError, ValueError):
            raise ECGInputError(f"{rid}: sampling_rate must be a number, got {fs!r}") from None
        if not math.isfinite(fs) or fs <= 0:
            raise ECGInputError(f"{rid}: sampling_rate must be positive, got {fs}")
        try:
            check_rate(fs)  # 1 Hz failed inside scipy ("Wn[0] must be less than Wn[1]"), 100 kHz gave false flags
        except ImplausibleECG as err:
            raise ECGInputError(f"{rid}: {err}") from None
        if names is None:
            names = self.lead_names
            if x.ndim == 1 and len(names) != 1:
                raise ECGInputError(f"{rid}: a 1-D signal needs lead_names=[<its lead>]")
            if x.ndim == 2 and x.shape[0] != len(names):
                hint = (" It looks like (samples, leads): pass signal.T." if x.shape[1] == len(names)
                        else " Pass lead_names=[...] naming each row.")
                raise ECGInputError(f"{rid}: signal has shape {x.shape} but no lead_names were given and the model "
                                    f"expects {len(names)} leads ({', '.join(names)}) as rows.{hint}")
        try:
            names = canonical_lead_names(list(names))
        except ValueError as err:
            raise ECGInputError(f"{rid}: {err}") from None
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise ECGInputError(f"{rid}: signal must be (leads, samples), got {x.ndim}-D shape {x.shape}")
        if x.shape[0] != len(names):
            if x.shape[1] == len(names):
                raise ECGInputError(f"{rid}: signal has shape {x.shape} = (samples, leads) but {len(names)} lead names "
                                    "were given; arrays are (leads, samples): pass signal.T (never transposed silently)")
            raise ECGInputError(f"{rid}: signal shape {x.shape} matches neither (leads, samples) nor (samples, leads) "
                                f"for {len(names)} lead names {names}")
        if isinstance(units, (list, tuple)):
            if len(units) != len(names):
                raise ECGInputError(f"{rid}: {len(units)} units for {len(names)} leads")
            scale = np.array([units_to_mv(u, rid) for u in units])[:, None]
        else:
            scale = units_to_mv(units if units is not None else self.units, rid)
        return {"id": rid, "x": x if np.all(scale == 1.0) else x * scale, "fs": fs, "names": names}

    # ------------------------------------------------------------------ per-record steps
    def _select_leads(self, rec, warn=True):
        """Rows in model lead order (zeros for missing), the lead mask, NaNs filled; flat/NaN leads masked."""
        x, names, rid = rec["x"], rec["names"], rec["id"]
        out = np.zeros((len(self.lead_names), x.shape[1]))
        mask = np.zeros(len(self.lead_names), dtype=bool)
        rows = [(j, names.index(lead)) for j, lead in enumerate(self.lead_names) if lead in names]
        if rows:
            dst, src = map(list, zip(*rows))
            sub = x if src == list(range(x.shape[0])) else x[src]  # no copy when the rows are already in order
            n_bad, lo, hi = filters.row_stats(sub)  # one pass: NaN count and finite min / max per lead
            nan_frac = n_bad / sub.shape[1]
            ptp = np.where(n_bad < sub.shape[1], hi - lo, 0.0)
            if n_bad.any():
                sub = np.where(np.isfinite(sub), sub, 0.0)
            keep = (nan_frac <= self.nan_lead_fraction) & (nan_frac < 1.0) & (ptp > self.flat_threshold)
            if keep.all() and dst == list(range(len(self.lead_names))):
                return sub, np.ones(len(self.lead_names), dtype=bool)
            for k, j in enumerate(dst):
                lead = self.lead_names[j]
                if nan_frac[k] > self.nan_lead_fraction or nan_frac[k] == 1.0:
                    if warn:
                        warnings.warn(f"{rid}: lead {lead} is {nan_frac[k]:.0%} NaN; masked and zero-filled",
                                      ECGQualityWarning, stacklevel=4)
                elif ptp[k] <= self.flat_threshold:
                    if warn:
                        warnings.warn(f"{rid}: lead {lead} is flat (peak-to-peak <= {self.flat_threshold} mV); masked "
                                      "and zero-filled", ECGQualityWarning, stacklevel=4)
                else:
                    out[j] = sub[k]
                    mask[j] = True
        if not mask.any():
            present = [n for n in self.lead_names if n in names]
            why = ("none of the model's leads " f"({', '.join(self.lead_names)}) is in the record's leads ({', '.join(names)})"
                   if not present else f"every usable lead ({', '.join(present)}) is flat or NaN-filled")
            raise ECGInputError(f"{rid}: no usable lead: {why}")
        return out, mask


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or type(x).__module__.startswith("torch")


def _to_numpy(x) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _first_given(*values):
    for v in values:
        if v is not None:
            return v
    return None


def _per_record(value, n: int, name: str) -> list:
    if value is None or isinstance(value, (str, int, float, np.integer, np.floating)):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ECGInputError(f"{name} has {len(value)} entries for {n} records")
    return value
