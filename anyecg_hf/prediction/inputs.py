"""Records -> model inputs, with each record's quality warnings or its error: the one preprocessing step of the
pipelines, the archive engine (`anyecg profile/embed`) and the examples.

`prepare_records` runs the model's `AnyECGFeatureExtractor` ONCE over a list of records (it is vectorised over
records: several times faster than one call per record), adds the signal-quality flags, and splits the windows
and the messages back per record. A message of the extractor or of the quality checks that starts with
"<record id>: " belongs to that record and loses the prefix (the result names its record already).
"""

from __future__ import annotations

import warnings as _warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MODEL_INPUT_KEYS", "PreparedRecord", "caught_messages", "prepare_records", "strip_record_prefix"]

# Tensors the feature extractor returns that the model takes (`window_to_record` is bookkeeping, never an input).
MODEL_INPUT_KEYS = ("input_values", "lead_mask", "sample_mask")


@dataclass
class PreparedRecord:
    """One record ready for the model, or why it is not.

    Attributes:
        inputs (`dict[str, np.ndarray]`): model inputs of its windows, `(n_windows, ...)` each; empty on error.
        warnings (`list[str]`): quality flags first, then the extractor's notes (masked leads, resampling, ...).
        error (`tuple[str, str]`, *optional*): `(error class, message)` when the record could not be prepared.
    """

    inputs: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    error: tuple | None = None

    @property
    def num_windows(self) -> int:
        return 0 if not self.inputs else int(self.inputs["input_values"].shape[0])


def strip_record_prefix(message: str, record_id) -> str:
    """Quality and extractor messages start with "<record id>: "; a result that names its record drops it."""
    prefix = f"{record_id}: "
    return message[len(prefix):] if record_id is not None and message.startswith(prefix) else message


def caught_messages(caught) -> list[str]:
    """The distinct messages of warnings caught with `warnings.catch_warnings(record=True)`, without the
    deprecation notices of libraries (they are not about the ECG)."""
    out = []
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, FutureWarning)):
            continue
        msg = str(w.message)
        if msg not in out:
            out.append(msg)
    return out


def prepare_records(signals, feature_extractor, *, quality: bool = True, extractor_kwargs: dict | None = None,
                    on_error: str = "raise", before_stage=None) -> list[PreparedRecord]:
    """Preprocess `signals` (a list of `ECGRecord`s or `(leads, samples)` arrays) for the model.

    Args:
        signals (`list`): the records; arrays need `sampling_rate` (and optionally `lead_names`, `units`,
            `record_ids`) in `extractor_kwargs`.
        feature_extractor (`AnyECGFeatureExtractor`): the model's preprocessing.
        quality (`bool`): add the signal-quality flags (flat / NaN / clipped / noisy leads, limb-lead reversal).
            A failing quality check becomes a warning: it never stops a prediction.
        extractor_kwargs (`dict`, *optional*): passed to the extractor and the quality checks.
        on_error (`str`): `"raise"`: an exception of the extractor propagates; `"record"`: if the batch fails, the
            records are prepared one by one and only the bad ones get an `error` (one bad file never stops a job).
        before_stage (callable, *optional*): called before the extractor and before the quality checks (the archive
            engine's readers wait there while the model has the cores).

    Returns:
        one `PreparedRecord` per signal, in order.
    """
    if on_error not in ("raise", "record"):
        raise ValueError(f"on_error must be 'raise' or 'record', got {on_error!r}")
    signals = list(signals)
    kwargs = dict(extractor_kwargs or {})
    if on_error == "raise" or not signals:
        return _prepare(signals, feature_extractor, quality, kwargs, before_stage)
    try:
        return _prepare(signals, feature_extractor, quality, kwargs, before_stage)
    except Exception:  # noqa: BLE001 -- find the culprit(s) record by record
        out = []
        for j, signal in enumerate(signals):
            one = dict(kwargs)
            if kwargs.get("record_ids") is not None:
                one["record_ids"] = [kwargs["record_ids"][j]]
            try:
                out += _prepare([signal], feature_extractor, quality, one, None)
            except Exception as err:  # noqa: BLE001 -- recorded, never raised
                out.append(PreparedRecord(error=(type(err).__name__, str(err) or repr(err))))
        return out


def _record_ids(signals, kwargs) -> list:
    ids = kwargs.get("record_ids")
    if ids is not None:
        return list(ids)
    return [getattr(s, "record_id", None) for s in signals]


def _prepare(signals, fe, quality, kwargs, before_stage) -> list[PreparedRecord]:
    if before_stage is not None:
        before_stage()
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        feats = fe(signals, return_tensors="np", return_window_index=True, **kwargs)
    messages = caught_messages(caught)
    owner = np.asarray(feats["window_to_record"])
    values = np.asarray(feats["input_values"])
    ids = _record_ids(signals, kwargs)
    if not np.isfinite(values).all():
        bad = sorted(set(owner[~np.isfinite(values).reshape(len(values), -1).all(axis=1)].tolist()))
        name = getattr(signals[bad[0]], "source", None) or ids[bad[0]] or f"record {bad[0]}"
        raise ValueError(f"{name}: preprocessing produced non-finite values")
    flags = [[] for _ in signals]
    if quality and hasattr(fe, "check_quality"):
        if before_stage is not None:
            before_stage()
        try:
            flags = [[str(f) for f in fl] for fl in fe.check_quality(signals, **kwargs)]
        except Exception as err:  # noqa: BLE001 -- a quality check must never stop a prediction
            flags = [[f"signal-quality check failed ({type(err).__name__}: {err})"] for _ in signals]
    out = []
    for j, signal in enumerate(signals):
        sel = np.flatnonzero(owner == j)
        if sel.size == 0:
            name = getattr(signal, "source", None) or ids[j] or f"record {j}"
            raise ValueError(f"{name}: the feature extractor returned no window for this record")
        a, b = int(sel[0]), int(sel[-1]) + 1  # windows of a record are contiguous
        prefix = f"{ids[j]}: "
        warns = []
        for m in flags[j] + messages:  # quality flags first
            if ids[j] is not None and m.startswith(prefix):
                m = m[len(prefix):]
            elif len(signals) > 1:
                continue  # another record's message
            if m not in warns:
                warns.append(m)
        inputs = {k: np.asarray(feats[k])[a:b] for k in MODEL_INPUT_KEYS if feats.get(k) is not None}
        out.append(PreparedRecord(inputs=inputs, warnings=warns))
    return out
