"""The content of a report, as plain data: model identity, measurements, conditions, quality flags per lead.

`report_context` gathers everything a page shows into one JSON-friendly dict; the HTML templates (`html.py`) and
the FHIR writer (`fhir.py`) only lay it out, so the two can never disagree about a number.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass

STAMP = "Research use only \u2014 not a medical device"
STAMP_DETAIL = ("The probabilities below come from a machine-learning model for research. They are not a diagnosis, "
                "have not been cleared or approved for clinical use, and must not guide the care of a patient.")

# Cart measurements (`ECGRecord.metadata["measurements"]`, issue #17): key -> (display name, unit), in reading order.
MEASUREMENTS = (
    ("heart_rate", "Heart rate", "bpm"),
    ("rr_ms", "RR interval", "ms"),
    ("p_ms", "P duration", "ms"),
    ("pr_ms", "PR interval", "ms"),
    ("qrs_ms", "QRS duration", "ms"),
    ("qt_ms", "QT interval", "ms"),
    ("qtc_ms", "QTc interval", "ms"),
    ("p_axis", "P axis", "\u00b0"),
    ("qrs_axis", "QRS axis", "\u00b0"),
    ("t_axis", "T axis", "\u00b0"),
)

# Names some readers used before the keys above were agreed (issue #17 renames them at the source); read as aliases.
_ALIASES = {"rr_interval": "rr_ms", "p_duration": "p_ms", "pr_interval": "pr_ms", "qrs_duration": "qrs_ms",
            "qt_interval": "qt_ms", "qtc_bazett": "qtc_ms", "qtc": "qtc_ms", "hr": "heart_rate",
            "ventricular_rate": "heart_rate"}


def normalize_measurements(measurements: dict | None) -> dict:
    """The measurements under the agreed keys (`heart_rate`, `pr_ms`, ...); an agreed key wins over its alias."""
    measurements = measurements or {}
    out = {}
    for key, value in measurements.items():
        canon = _ALIASES.get(key, key)
        if canon != key and canon in measurements:
            continue
        out[canon] = value
    return out


@dataclass
class ModelInfo:
    """Which model made a report: shown on every page and written into every FHIR bundle.

    Args:
        model_id: Hub id or folder name (what the user passed, or the default model's Hub id).
        revision: Hub revision / commit, or a checkpoint hash for converted files; `None` when unknown.
        precision: `"fp32"`, `"bf16"` or `"fp16"` (`anyecg_hf.runtime.precision.precision_label`).
        architecture: the head class (`config.architectures[0]`).
        label_space: name of the diagnosis label space and its size, e.g. `"ecgfounder-150 (150 conditions)"`.
        package_version: `anyecg_hf.__version__`.
    """

    model_id: str
    revision: str | None = None
    precision: str = "fp32"
    architecture: str | None = None
    label_space: str | None = None
    package_version: str | None = None

    @classmethod
    def from_model(cls, model, model_arg=None, revision: str | None = None, precision: str = "fp32") -> "ModelInfo":
        """Describe a loaded model. `model_arg` is what the user passed (`None` = the default ECGFounder)."""
        from ..version import __version__

        cfg = model.config
        folder = getattr(model, "name_or_path", None) or ""
        source = {}
        if folder and os.path.isfile(os.path.join(folder, "anyecg_source.json")):
            try:
                with open(os.path.join(folder, "anyecg_source.json"), encoding="utf-8") as f:
                    source = json.load(f)
            except (OSError, ValueError):
                source = {}
        if model_arg in (None, "", "default"):
            model_id = source.get("repo_id", "PKUDigitalHealth/ECGFounder") + " (converted)"
        elif os.path.exists(str(model_arg)):
            model_id = os.path.basename(os.path.normpath(str(model_arg)))
        else:
            model_id = str(model_arg)
        rev = revision or source.get("revision") or getattr(cfg, "_commit_hash", None)
        if source.get("sha256"):
            rev = f"{rev or 'checkpoint'} (sha256 {source['sha256'][:12]})"
        space = getattr(cfg, "label_space", None)
        space_text = None
        if space is not None:
            space_text = f"{space.name or 'diagnoses'} ({len(space)} conditions)"
        arch = (getattr(cfg, "architectures", None) or [type(model).__name__])[0]
        return cls(model_id=model_id, revision=rev, precision=precision, architecture=arch, label_space=space_text,
                   package_version=__version__)

    def to_dict(self) -> dict:
        return asdict(self)


def format_measurements(measurements: dict | None) -> list[dict]:
    """`[{"key", "name", "value", "unit", "text"}]` for the measurements a file has, in reading order; keys this
    list does not know are appended with their raw names (a reader may add more)."""
    rows = []
    measurements = normalize_measurements(measurements)
    for key, name, unit in MEASUREMENTS:
        value = measurements.pop(key, None)
        if _is_number(value):
            rows.append({"key": key, "name": name, "value": float(value), "unit": unit,
                         "text": f"{float(value):.0f}{'' if unit == chr(176) else ' '}{unit}"})
    for key, value in sorted(measurements.items()):
        if _is_number(value):
            rows.append({"key": key, "name": key.replace("_", " "), "value": float(value), "unit": "",
                         "text": f"{float(value):g}"})
    return rows


def measurement_header(measurements: dict | None) -> str:
    """One line for the tracing header, e.g. `HR 72 bpm   PR 160 ms   QRS 92 ms   QT/QTc 380/410 ms   axes
    P/QRS/T 45/30/40°` (only what the file has; `""` when it has none)."""
    m = {k: v for k, v in normalize_measurements(measurements).items() if _is_number(v)}
    parts = []
    if "heart_rate" in m:
        parts.append(f"HR {m['heart_rate']:.0f} bpm")
    for key, name in (("pr_ms", "PR"), ("qrs_ms", "QRS")):
        if key in m:
            parts.append(f"{name} {m[key]:.0f} ms")
    if "qt_ms" in m or "qtc_ms" in m:
        qt, qtc = m.get("qt_ms"), m.get("qtc_ms")
        if qt is not None and qtc is not None:
            parts.append(f"QT/QTc {qt:.0f}/{qtc:.0f} ms")
        else:
            parts.append(f"{'QT' if qt is not None else 'QTc'} {(qt if qt is not None else qtc):.0f} ms")
    axes = [(n, m[k]) for k, n in (("p_axis", "P"), ("qrs_axis", "QRS"), ("t_axis", "T")) if k in m]
    if axes:
        parts.append(f"axes {'/'.join(n for n, _ in axes)} {'/'.join(f'{v:.0f}' for _, v in axes)}\u00b0")
    return "   ".join(parts)


def _is_number(value) -> bool:
    try:
        return value is not None and not isinstance(value, bool) and float(value) == float(value)
    except (TypeError, ValueError):
        return False


def quality_by_lead(flags, lead_names) -> tuple[list[dict], list[dict]]:
    """Per-lead rows `[{"lead", "ok", "flags": [{"kind", "message"}]}]` in the record's lead order, and the
    record-level flags (limb-lead consistency, electrode reversal) that name no single lead."""
    per = {name: [] for name in lead_names}
    record_level = []
    for f in flags:
        item = {"kind": f.kind, "message": f.message}
        if f.lead is not None and f.lead in per:
            per[f.lead].append(item)
        else:
            record_level.append(item)
    return [{"lead": n, "ok": not per[n], "flags": per[n]} for n in lead_names], record_level


def report_context(record, profile: dict, info: ModelInfo, *, flags=(), top_k: int = 10,
                   tracing_png: str | None = None, risk_png: str | None = None, risk_note: str | None = None,
                   generated: str | None = None) -> dict:
    """Everything one report page shows, as plain data.

    Args:
        record: the `ECGRecord` (its id, source file name, leads, rate, duration, metadata).
        profile: its profile from the `ecg-profiling` pipeline (all diagnoses, best first; risks when present).
        info: the model that made the profile.
        flags: `QualityFlag`s of the record (`anyecg_hf.processing.signal_quality`).
        top_k: diagnoses shown in the table (the best `top_k`); other positive ones are listed below it.
        tracing_png, risk_png: base64 PNGs of the 12-lead tracing and of the risk curves.
        risk_note: why there are no risk curves (a model without a risk head), shown instead.
        generated: ISO time stamp (default: now, UTC).
    """
    diagnoses = list(profile.get("diagnoses") or [])
    shown, more = diagnoses[:top_k], [d for d in diagnoses[top_k:] if d.get("positive")]
    shown = [dict(d, code_text=_code_text(d)) for d in shown]
    leads, record_flags = quality_by_lead(flags, list(record.lead_names))
    meta = record.metadata or {}
    patient = {k: meta[k] for k in ("age", "sex") if meta.get(k) is not None}
    return {
        "stamp": STAMP,
        "stamp_detail": STAMP_DETAIL,
        "record_id": record.record_id,
        "file_name": os.path.basename(record.source) if record.source else None,
        "format": meta.get("format"),
        "acquisition_time": meta.get("acquisition_time"),
        "patient": patient,
        "signal": {"leads": record.num_leads, "sampling_rate": float(record.sampling_rate),
                   "duration": float(record.duration), "lead_names": list(record.lead_names)},
        "measurements": format_measurements(meta.get("measurements")),
        "statements": [str(s) for s in meta.get("diagnosis_statements") or []],
        "diagnoses": shown,
        "more_positive": more,
        "num_conditions": len(diagnoses),
        "num_positive": sum(bool(d.get("positive")) for d in diagnoses),
        "risks": list(profile.get("risks") or []),
        "risk_png": risk_png,
        "risk_note": risk_note,
        "tracing_png": tracing_png,
        "quality": {"leads": leads, "record": record_flags, "num_flags": sum(len(r["flags"]) for r in leads) + len(record_flags)},
        "warnings": [w for w in profile.get("warnings") or [] if not any(w.endswith(f["message"]) for f in _all(flags))],
        "model": info.to_dict(),
        "generated": generated or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _code_text(diagnosis: dict) -> str | None:
    """The codes shown beside a condition: its own, or the crosswalk's exact SNOMED-CT codes (as in FHIR output)."""
    from .fhir import condition_codings

    codings = condition_codings(diagnosis)
    if not codings:
        return None
    system = "SNOMED-CT" if codings[0]["system"].endswith("snomed.info/sct") else diagnosis.get("code_system")
    return f"{system} {', '.join(c['code'] for c in codings)}"


def _all(flags):
    return [{"message": f.message} for f in flags]
