"""FHIR R4 bundles (`anyecg_hf.reporting.fhir`): valid under fhir.resources' R4B models, SNOMED-CT codes equal to
the crosswalk's exact codes, probability / interpretation / threshold as written in the profile."""

import copy
import json

import pytest

from anyecg_hf.labels import crosswalk
from anyecg_hf.modeling import LabelSpace
from anyecg_hf.modeling.ecgfounder_labels import ECGFOUNDER_LABELS
from anyecg_hf.prediction import profile_records
from anyecg_hf.reporting import ModelInfo, fhir_bundle, write_fhir_bundle
from anyecg_hf.reporting.fhir import validate_bundle

pytest.importorskip("fhir.resources")

INFO = ModelInfo(model_id="org/anyecg-test", revision="abc123", precision="fp32", architecture="AnyECGForDiagnosis",
                 label_space="ecgfounder-150 (150 conditions)", package_version="0.0")
# the value sets fhir.resources leaves unchecked (it validates types and cardinality, not required bindings)
OBS_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}


class _Cfg:
    def __init__(self, space):
        self.label_space, self.risk_label_space, self.risk_horizons = space, None, []


def _profile(space, probs, top_k=None):
    import numpy as np

    return profile_records({"probabilities": np.asarray(probs)}, _Cfg(space), top_k=top_k, record="HR06000",
                           warnings=["lead V2 is flat"])


def _resources(bundle, kind):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_ecgfounder_bundle_validates_and_codes_equal_the_crosswalk(tmp_path):
    import numpy as np

    space = LabelSpace.ecgfounder()
    probs = np.linspace(0.99, 0.01, len(space))
    profile = _profile(space, probs)
    bundle = fhir_bundle(profile, INFO, record_metadata={"acquisition_time": "2019-03-01T10:22:00"},
                         issued="2026-01-02T03:04:05+00:00")
    path = write_fhir_bundle(bundle, tmp_path / "fhir" / "HR06000.json")
    bundle = json.loads(open(path, encoding="utf-8").read())
    validate_bundle(bundle)  # Bundle + each resource as its own R4B type

    observations = _resources(bundle, "Observation")
    (report,) = _resources(bundle, "DiagnosticReport")
    assert len(observations) == len(space) == 150
    assert [r["reference"] for r in report["result"]] == [f"urn:uuid:{o['id']}" for o in observations]
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    assert all(r["reference"] in full_urls for r in report["result"])
    assert report["status"] in {"registered", "partial", "preliminary", "final"}
    assert report["code"]["coding"][0] == {"system": "http://loinc.org", "code": "11524-6", "display": "EKG study"}
    assert "not a medical device" in report["conclusion"] and "lead V2 is flat" in report["conclusion"]
    assert report["effectiveDateTime"] == "2019-03-01"  # a local time without zone is not a FHIR dateTime

    table = crosswalk("ecgfounder", "snomed")
    exact = table[(table["tier"] == "exact") & (table["code"] != "")]
    expected = {label: sorted(exact[exact["label"] == label]["code"]) for label in ECGFOUNDER_LABELS}
    n_coded = 0
    for obs, d in zip(observations, profile["diagnoses"]):
        assert obs["status"] in OBS_STATUS
        assert obs["code"]["text"] == d["label"]
        codes = sorted(c["code"] for c in obs["code"].get("coding", []))
        assert codes == expected[d["label"]], d["label"]
        assert all(c["system"] == "http://snomed.info/sct" for c in obs["code"].get("coding", []))
        n_coded += bool(codes)
        assert obs["valueQuantity"] == {"value": round(d["score"], 6), "unit": "probability",
                                        "system": "http://unitsofmeasure.org", "code": "1"}
        want = "POS" if d["score"] >= d["threshold"] else "NEG"
        assert obs["interpretation"][0]["coding"][0]["code"] == want
        assert obs["component"][0]["valueQuantity"]["value"] == d["threshold"] == 0.5
    assert n_coded == len({lab for lab in exact["label"]})  # every label with an exact code got it (51 labels)
    positives_coded = [o["code"] for o, d in zip(observations, profile["diagnoses"]) if d["positive"] and "coding" in o["code"]]
    assert report["conclusionCode"] == positives_coded
    (device,) = _resources(bundle, "Device")
    assert device["deviceName"][0]["name"] == "org/anyecg-test" and device["version"][0]["value"] == "abc123"
    assert "precision fp32" in device["note"][0]["text"]


def test_label_space_codes_win_and_uncoded_labels_are_text(tmp_path):
    space = LabelSpace([
        {"id": "af", "name": "Atrial fibrillation", "code_system": "SNOMED-CT", "code": "164889003", "threshold": 0.3},
        {"id": "hf", "name": "Heart failure", "code_system": "ICD-10", "code": "I50"},
        {"id": "x", "name": "Something else"},
    ])
    profile = _profile(space, [0.35, 0.2, 0.9], top_k=2)
    bundle = fhir_bundle(profile, INFO.to_dict())
    validate_bundle(bundle)
    obs = _resources(bundle, "Observation")
    assert len(obs) == 2  # top_k of the profile decides what is reported
    assert obs[0]["code"] == {"text": "Something else"}
    assert obs[1]["code"]["coding"] == [{"system": "http://snomed.info/sct", "code": "164889003",
                                         "display": "Atrial fibrillation"}]
    assert obs[1]["interpretation"][0]["coding"][0]["code"] == "POS"  # 0.35 >= its own threshold 0.3
    assert obs[1]["component"][0]["valueQuantity"]["value"] == 0.3
    # stable ids: the same ECG and model give the same resource ids (reruns replace, not duplicate, downstream)
    again = fhir_bundle(profile, INFO.to_dict())
    assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in bundle["entry"]]


def test_fhir_datetime():
    from anyecg_hf.reporting.fhir import fhir_datetime

    assert fhir_datetime("2019-03-01T10:22:00+01:00") == "2019-03-01T10:22:00+01:00"
    assert fhir_datetime("2019-03-01T10:22:00Z") == "2019-03-01T10:22:00Z"
    assert fhir_datetime("2019-03-01 10:22:00") == "2019-03-01"
    assert fhir_datetime("2019") == "2019"
    assert fhir_datetime("yesterday") is None and fhir_datetime(None) is None


def test_validator_rejects_a_broken_bundle():
    import numpy as np
    from pydantic import ValidationError

    bundle = fhir_bundle(_profile(LabelSpace.ecgfounder(), np.full(150, 0.4), top_k=3), INFO)
    broken = copy.deepcopy(bundle)
    del broken["entry"][2]["resource"]["status"]
    with pytest.raises(ValidationError):
        validate_bundle(broken)
    broken = copy.deepcopy(bundle)
    broken["entry"][2]["resource"]["valueQuantity"]["value"] = "high"
    with pytest.raises(ValidationError):
        validate_bundle(broken)


def test_profile_cli_writes_one_valid_bundle_per_ecg(assets, tmp_path):
    """`anyecg profile --format fhir`: a bundle per readable ECG, the same probabilities as the CSV output of the
    same model, the unreadable input listed beside the folder, and the default of 10 reported conditions."""
    import csv
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from anyecg_hf.testing import write_tiny_report_model

    root = Path(__file__).resolve().parents[1]
    model = write_tiny_report_model(tmp_path / "tiny")
    src = tmp_path / "ecgs"
    src.mkdir()
    for name in ("E07501", "HR06003"):
        for ext in (".hea", ".mat"):
            shutil.copy(assets / "data" / "cinc2021" / f"{name}{ext}", src / f"{name}{ext}")
    (src / "zz_broken.hea").write_text("not a header\n")
    env = dict(os.environ, PYTHONPATH=str(root), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "anyecg_hf.cli", "profile", *map(str, args)], env=env, cwd=root,
                              capture_output=True, text=True, timeout=600)

    out = tmp_path / "fhir"
    r = cli(src, "--model", model, "--format", "fhir", "--out", out, "--workers", "0", "--no-progress")
    assert r.returncode == 0, r.stderr
    r2 = cli(src, "--model", model, "--top-k", "10", "--out", tmp_path / "p.csv", "--workers", "0", "--no-progress")
    assert r2.returncode == 0, r2.stderr
    with open(tmp_path / "p.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["kind"] == "diagnosis"]
    assert sorted(p.name for p in out.iterdir()) == ["E07501.json", "HR06003.json"]
    for path in sorted(out.iterdir()):
        bundle = json.loads(path.read_text())
        validate_bundle(bundle)
        obs = _resources(bundle, "Observation")
        mine = [r for r in rows if r["record_id"] == path.stem]
        assert len(obs) == len(mine) == 10
        assert [o["code"]["text"] for o in obs] == [r["label"] for r in mine]
        assert [o["valueQuantity"]["value"] for o in obs] == pytest.approx([float(r["score"]) for r in mine], abs=1e-6)
        assert [o["interpretation"][0]["coding"][0]["code"] for o in obs] == \
            ["POS" if r["positive"] == "True" else "NEG" for r in mine]
        (device,) = _resources(bundle, "Device")
        assert device["deviceName"][0]["name"] == "tiny" and "precision fp32" in device["note"][0]["text"]
    errors = json.loads((tmp_path / "fhir.errors.json").read_text())
    assert [os.path.basename(e["path"]) for e in errors] == ["zz_broken.hea"]
    r = cli(src, "--model", model, "--format", "fhir")
    assert r.returncode == 2 and "need --out" in r.stderr
