"""FHIR R4 output: one `Bundle` per ECG holding a `DiagnosticReport`, one `Observation` per reported condition, and
a `Device` naming the model.

```python
from anyecg_hf.reporting import fhir_bundle, write_fhir_bundle
bundle = fhir_bundle(profile, model=ModelInfo(...), record_metadata=record.metadata)
write_fhir_bundle(bundle, "fhir/HR06000.json")
```

Coding. Each `Observation.code` carries SNOMED-CT codings (`http://snomed.info/sct`) when the label space gives the
condition a SNOMED-CT code, or when the label space is ECGFounder's and the package crosswalk
(`anyecg_hf.labels.crosswalk("ecgfounder", "snomed")`) has an `exact` match (every exact code, as codings of one
concept); ICD-10 / ICD-9 codes of a label space are coded likewise; otherwise the concept is the label text only.
The probability is `valueQuantity` (UCUM unit `1`), the decision from the condition's threshold is
`interpretation` (v3 ObservationInterpretation `POS` / `NEG`), and the threshold itself a `component`.
Resources are `preliminary` (machine output nobody has verified) and carry the research-use stamp.

Not included: a `subject` (the profile knows no patient; the receiving system links it) and the risk predictions
(R4's `RiskAssessment` requires a subject, so they stay in the table outputs).

Why the writer is hand-written: it emits two fixed resource shapes as plain dicts, so the plain install needs no
FHIR library. `fhir.resources` (pure Python, but ~15 MB of models for every FHIR version, plus pydantic) is used
by the tests, which validate every bundle with its R4B models (DiagnosticReport and Observation are the same as
R4's), and by `validate_bundle` when it is installed.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import re
import uuid

from .context import STAMP, ModelInfo

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_CODE_SYSTEM_URIS = {"SNOMED-CT": SNOMED, "ICD-10": "http://hl7.org/fhir/sid/icd-10",
                     "ICD-9": "http://hl7.org/fhir/sid/icd-9-cm"}
_NAMESPACE = uuid.UUID("6f1f7e2c-53a4-4d0e-9a57-6c1f0b7f4e21")  # stable ids: same ECG + model -> same resource ids
_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
_ZONED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


def fhir_datetime(value) -> str | None:
    """A FHIR `dateTime` from a reader's ISO 8601 `acquisition_time`: kept when it has a time zone; a local time
    without one (what most carts store) is cut to its date, since FHIR requires a zone once a time is given;
    `None` for anything else."""
    text = str(value or "").strip().replace(" ", "T")
    if _ZONED.fullmatch(text) or _DATE.fullmatch(text):
        return text
    date = text[:10]
    return date if _DATE.fullmatch(date) and len(date) == 10 else None


@functools.lru_cache(maxsize=1)
def ecgfounder_snomed() -> dict:
    """`{ECGFounder label: [(code, display), ...]}` from the crosswalk's `exact` rows (`{}` when the crosswalk
    module is not available)."""
    try:
        from ..labels import crosswalk
    except ImportError:
        return {}
    table = crosswalk("ecgfounder", "snomed")
    out: dict = {}
    for row in table[(table["tier"] == "exact") & (table["code"].astype(str) != "")].itertuples():
        out.setdefault(str(row.label), []).append((str(row.code), str(row.name)))
    return out


def condition_codings(diagnosis: dict) -> list[dict]:
    """FHIR codings of one profile diagnosis (`{"id", "label", "code_system", "code", ...}`): its own code when the
    label space has one in a FHIR-known system, else the crosswalk's exact SNOMED-CT codes for an ECGFounder
    label, else `[]` (the concept is then its text)."""
    system = _CODE_SYSTEM_URIS.get(diagnosis.get("code_system") or "")
    if system and diagnosis.get("code"):
        return [{"system": system, "code": str(diagnosis["code"]), "display": str(diagnosis["label"])}]
    from ..modeling.ecgfounder_labels import ECGFOUNDER_LABELS

    if diagnosis.get("label") in ECGFOUNDER_LABELS:
        return [{"system": SNOMED, "code": code, "display": name}
                for code, name in ecgfounder_snomed().get(diagnosis["label"], [])]
    return []


def _quantity(p: float) -> dict:
    return {"value": round(float(p), 6), "unit": "probability", "system": UCUM, "code": "1"}


def _uuid(*parts) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join(str(p) for p in parts)))


def fhir_bundle(profile: dict, model: ModelInfo | dict, *, record_metadata: dict | None = None,
                issued: str | None = None) -> dict:
    """One ECG's FHIR R4 `Bundle` (type `collection`) as a JSON-ready dict.

    Args:
        profile: the ECG's profile (`ecg-profiling` pipeline / `profile_records`); every diagnosis in it becomes an
            Observation (so `top_k` / `only_positive` of the profile decide what is reported).
        model: the model that made it (`ModelInfo` or its dict): the `Device` resource.
        record_metadata: the record's metadata (`acquisition_time` becomes `effectiveDateTime`, see
            `fhir_datetime`).
        issued: ISO instant of the report (default: now, UTC).
    """
    info = model.to_dict() if isinstance(model, ModelInfo) else dict(model)
    record = str(profile.get("record"))
    issued = issued or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    key = (record, info.get("model_id"), info.get("revision"))
    device_id, report_id = _uuid("device", *key[1:]), _uuid("report", *key)
    device = {
        "resourceType": "Device", "id": device_id,
        "deviceName": [{"name": str(info.get("model_id")), "type": "model-name"}],
        "note": [{"text": f"anyecg_hf {info.get('package_version')} model {info.get('model_id')}, head "
                          f"{info.get('architecture')}, precision {info.get('precision')}. {STAMP}."}],
    }
    if info.get("revision"):
        device["version"] = [{"value": str(info["revision"])}]
    effective = fhir_datetime((record_metadata or {}).get("acquisition_time"))
    observations, positives = [], []
    for d in profile.get("diagnoses") or []:
        if d.get("score") is None:
            continue
        codings = condition_codings(d)
        concept = {"text": str(d["label"])}
        if codings:
            concept = {"coding": codings, "text": str(d["label"])}
        positive = bool(d.get("positive"))
        if positive:
            positives.append((d["label"], concept))
        obs = {
            "resourceType": "Observation", "id": _uuid("observation", *key, d.get("id")), "status": "preliminary",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "procedure", "display": "Procedure"}]}],
            "code": concept,
            "identifier": [{"system": "urn:anyecg:condition", "value": str(d.get("id"))}],
            "issued": issued,
            "valueQuantity": _quantity(d["score"]),
            "interpretation": [{"coding": [{"system": _INTERPRETATION, "code": "POS" if positive else "NEG",
                                            "display": "Positive" if positive else "Negative"}]}],
            "component": [{"code": {"text": "decision threshold"}, "valueQuantity": _quantity(d["threshold"])}],
            "device": {"reference": f"urn:uuid:{device_id}"},
            "note": [{"text": STAMP}],
        }
        if effective:
            obs["effectiveDateTime"] = effective
        observations.append(obs)
    found = "; ".join(label for label, _ in positives) or "none"
    report = {
        "resourceType": "DiagnosticReport", "id": report_id, "status": "preliminary",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "EC",
                                  "display": "Electrocardiac (e.g., EKG, EEC, Holter)"}]}],
        "code": {"coding": [{"system": LOINC, "code": "11524-6", "display": "EKG study"}],
                 "text": "ECG machine-learning profile"},
        "identifier": [{"system": "urn:anyecg:record", "value": record}],
        "issued": issued,
        "result": [{"reference": f"urn:uuid:{o['id']}"} for o in observations],
        "conclusion": f"{STAMP}. Conditions at or above their decision threshold: {found}. Model "
                      f"{info.get('model_id')} ({info.get('revision') or 'revision not recorded'}, "
                      f"{info.get('precision')}).",
    }
    coded = [c for _, c in positives if "coding" in c]
    if coded:
        report["conclusionCode"] = coded
    if effective:
        report["effectiveDateTime"] = effective
    warnings = profile.get("warnings") or []
    if warnings:
        report["conclusion"] += " Signal quality: " + "; ".join(warnings) + "."
    entries = [device, report, *observations]
    return {"resourceType": "Bundle", "id": _uuid("bundle", *key), "type": "collection", "timestamp": issued,
            "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in entries]}


def validate_bundle(bundle: dict) -> None:
    """Validate with `fhir.resources`' R4B models (the Bundle and each resource as its own type); raises
    `ImportError` when the library is not installed, pydantic's `ValidationError` when the bundle is invalid."""
    import importlib

    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)
    for entry in bundle["entry"]:
        kind = entry["resource"]["resourceType"]
        cls = getattr(importlib.import_module(f"fhir.resources.R4B.{kind.lower()}"), kind)
        cls.model_validate(entry["resource"])


def write_fhir_bundle(bundle: dict, path) -> str:
    """Write a bundle as JSON (UTF-8, indented), atomically (a temp file renamed into place)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(bundle, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


def write_fhir_folder(profiles, out, model: ModelInfo | dict, *, issued: str | None = None) -> list[str]:
    """Write `out/<record>.json`, one bundle per profile (`anyecg profile --format fhir`); record ids are made
    file-safe, and a repeated id gets a numbered suffix rather than overwriting. Returns the paths written."""
    os.makedirs(out, exist_ok=True)
    issued = issued or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    used, paths = set(), []
    for profile in profiles:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(profile.get("record"))).strip("._") or "ecg"
        stem, k = name, 1
        while name in used:
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        paths.append(write_fhir_bundle(fhir_bundle(profile, model, issued=issued), os.path.join(out, f"{name}.json")))
    return paths
