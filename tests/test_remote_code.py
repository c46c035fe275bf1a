"""A saved folder loads with `trust_remote_code=True` where anyecg_hf is not installed: the model (also in
test_core_model / test_risk_models), the feature extractor and the three `ecg-*` pipelines (anyecg_hf.remote_code).
The package is hidden in a subprocess (`sys.modules["anyecg_hf"] = None`), so only the folder's files can be used."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import wfdb
from transformers import pipeline

import anyecg_hf  # noqa: F401 - registers the ecg-* tasks
from anyecg_hf import AnyECGFeatureExtractor, AnyECGForHealthProfiling
from anyecg_hf.modeling import LabelSpace
from anyecg_hf.remote_code import REMOTE_MODULES, RemoteCodeError, _flat_copy, write_remote_code
from anyecg_hf.testing import tiny_config

pytestmark = pytest.mark.floors
RECORDS = ["HR06000", "JS20000", "E07500"]
TASKS = ("ecg-classification", "ecg-profiling", "ecg-embedding")

HIDDEN = textwrap.dedent("""
    import json, sys
    sys.modules["anyecg_hf"] = None  # hide the installed package: only the files in the folder may be used
    import numpy as np
    from transformers import AutoFeatureExtractor, pipeline
    folder, data, out = sys.argv[1:4]
    signals = dict(np.load(data))
    fe = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    assert type(fe).__module__.startswith("transformers_modules"), type(fe).__module__
    np.save(out + "/features.npy", fe([signals[r] for r in signals], sampling_rate=500)["input_values"])
    results = {}
    for task in ("ecg-classification", "ecg-profiling", "ecg-embedding"):
        pipe = pipeline(task, model=folder, trust_remote_code=True)
        assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
        assert type(pipe.feature_extractor).__module__.startswith("transformers_modules")
        got = pipe([{"signal": signals[r], "sampling_rate": 500, "record": r} for r in signals])
        results[task] = [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in g.items()} if isinstance(g, dict)
                         else g for g in got]
    try:
        pipe(folder + "/record.hea")
    except ImportError as err:
        results["file_error"] = str(err)
    json.dump(results, open(out + "/results.json", "w"))
""")


def _jsonable(results):
    return json.loads(json.dumps([{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in r.items()}
                                  if isinstance(r, dict) else r for r in results]))


@pytest.fixture(scope="module")
def saved(tmp_path_factory, assets):
    torch.manual_seed(3)
    cfg = tiny_config(risk_label_space=LabelSpace.from_names(["heart failure", "atrial fibrillation"]))
    cfg.architectures = ["AnyECGForHealthProfiling"]
    folder = tmp_path_factory.mktemp("remote") / "model"
    AnyECGForHealthProfiling(cfg).eval().save_pretrained(folder)
    signals = {r: wfdb.rdsamp(str(assets / "data" / "cinc2021" / r))[0].T for r in RECORDS}
    return folder, signals


def test_folder_carries_the_code_and_declares_it(saved):
    folder, _ = saved
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"].startswith("modeling_anyecg")
    assert config["custom_pipelines"]["ecg-profiling"]["impl"] == "pipeline_profiling.ECGProfilingPipeline"
    assert set(config["custom_pipelines"]) == set(TASKS)
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    assert pre["auto_map"] == {"AutoFeatureExtractor": "feature_extraction_anyecg.AnyECGFeatureExtractor"}
    for name in REMOTE_MODULES.values():
        text = (folder / f"{name}.py").read_text()
        assert "from .." not in text and "\nfrom anyecg_hf" not in text, name
    # with the package imported, the installed pipelines serve the tasks: no trust_remote_code needed
    pipe = pipeline("ecg-profiling", model=str(folder))
    assert type(pipe).__module__ == "anyecg_hf.pipelines.profiling"


def test_folder_loads_without_the_package(saved, parity, tmp_path):
    folder, signals = saved
    np.savez(tmp_path / "signals.npz", **signals)
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-c", HIDDEN, str(folder), str(tmp_path / "signals.npz"), str(tmp_path)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]

    # the folder's extractor is the released recipe: the fixture's tolerance, and the package's numbers
    features = np.load(tmp_path / "features.npy")
    assert np.abs(features - np.load(parity / "preprocessed_expected.npy")).max() < 1e-4
    package = AnyECGFeatureExtractor.from_pretrained(folder)([signals[r] for r in RECORDS], sampling_rate=500)
    assert np.abs(features - package["input_values"]).max() < 2e-5

    remote = json.loads((tmp_path / "results.json").read_text())
    inputs = [{"signal": signals[r], "sampling_rate": 500, "record": r} for r in RECORDS]
    for task in TASKS:
        expected = _jsonable(pipeline(task, model=str(folder))(inputs))
        got = remote[task]
        assert len(got) == len(expected) == 3
        for g, e in zip(got, expected):
            if task == "ecg-classification":
                assert [d["label"] for d in g] == [d["label"] for d in e]
                np.testing.assert_allclose([d["score"] for d in g], [d["score"] for d in e], atol=1e-5)
            elif task == "ecg-embedding":
                assert g["record"] == e["record"]
                np.testing.assert_allclose(g["embedding"], e["embedding"], atol=1e-5)
            else:
                assert g["record"] == e["record"] and g["warnings"] == e["warnings"]
                assert [d["id"] for d in g["diagnoses"]] == [d["id"] for d in e["diagnoses"]]
                np.testing.assert_allclose([d["score"] for d in g["diagnoses"]], [d["score"] for d in e["diagnoses"]], atol=1e-5)
                assert [d["id"] for d in g["risks"]] == [d["id"] for d in e["risks"]]
                assert sorted(d["id"] for d in g["risks"]) == ["atrial fibrillation", "heart failure"]
                np.testing.assert_allclose([d["risk_score"] for d in g["risks"]], [d["risk_score"] for d in e["risks"]], atol=1e-5)
    assert "needs the anyecg_hf package" in remote["file_error"] and "record.hea" in remote["file_error"]


def test_a_module_that_breaks_the_flat_copy_is_refused(monkeypatch):
    # an unguarded import of a module a saved folder does not carry fails when the folder is written, not on a
    # user's machine
    monkeypatch.setattr("anyecg_hf.remote_code._source", lambda m: "from ..io import read_ecg\n")
    with pytest.raises(RemoteCodeError, match="line 1 imports anyecg_hf.io"):
        _flat_copy("anyecg_hf.pipelines.base")
    monkeypatch.setattr("anyecg_hf.remote_code._source",
                        lambda m: "try:\n    from ..io import read_ecg\nexcept ImportError:\n    pass\nfrom .base import X\n")
    text, needs = _flat_copy("anyecg_hf.pipelines.profiling")
    assert "    from anyecg_hf.io import read_ecg\n" in text and "from .pipeline_base import X\n" in text
    assert needs == {"anyecg_hf.pipelines.base"}


def test_entry_files_name_their_whole_closure(tmp_path):
    # transformers copies the files named by the entry file (some releases: only those): pipeline_profiling must name leads.py,
    # which it reaches only through pipeline_base -> feature extractor -> ecg_inputs
    write_remote_code(tmp_path, ["anyecg_hf.pipelines.profiling"])
    from transformers.dynamic_module_utils import get_imports, get_relative_imports

    named = set(get_relative_imports(tmp_path / "pipeline_profiling.py"))
    assert {"leads", "plausibility", "filters", "pipeline_base", "prediction_profiles"} <= named
    assert {p.stem for p in tmp_path.glob("*.py")} == named | {"pipeline_profiling"}
    for path in tmp_path.glob("*.py"):  # transformers' requirement check must not ask for anyecg_hf
        assert "anyecg_hf" not in get_imports(path), path.name
