"""EHR -> model end to end on the 50 CinC records with a synthetic EHR written by the test (codes dated before and
after each ECG, deaths, losses to follow-up): build-targets -> build-dataset --targets (sparse EHR columns, batches
expanded on the fly, equal to the targets' own expansion) -> a tiny profiling run -> evaluate (phecode summary);
the output loads with AutoModel and the pipeline shows phecode names."""

from __future__ import annotations

import json
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("duckdb")

from anyecg_hf.cli import main as cli_main  # noqa: E402
from anyecg_hf.ehr import SparseTargets  # noqa: E402
from anyecg_hf.ehr.dataset import EHR_COLUMNS, build_ehr_dataset, condition_index, expand_rows  # noqa: E402
from test_recipes import TINY, _recipe, _reset_accelerate  # noqa: E402  (tests/ is on sys.path under pytest)

MAP = """phecode,ICD,flag,phecode_string,phecode_category,exclude_range,sex,phecode_unrolled
401,I10,10,Hypertension,circulatory system,,Both,401
427.2,I48.91,10,Atrial fibrillation and flutter,circulatory system,427.21,Both,427.2
427.21,I48.0,10,Atrial fibrillation,circulatory system,427.2,Both,427.21
427.21,I48.0,10,Atrial fibrillation,circulatory system,427.2,Both,427.2
250.2,E11.9,10,Type 2 diabetes,endocrine/metabolic,250.1,Both,250.2
250.1,E10.9,10,Type 1 diabetes,endocrine/metabolic,250.2,Both,250.1
185,C61,10,Cancer of prostate,neoplasms,,Male,185
"""
CODES = ["I10", "I48.91", "I48.0", "E11.9", "E10.9", "C61"]


def write_synthetic_ehr(records: Path, out: Path) -> dict:
    """ecgs / diagnoses / follow-up for the CinC records: 20 patients, codes before and after each ECG, deaths and
    losses to follow-up (deterministic: crc32 of the ids)."""
    stems = sorted(p.stem for p in records.glob("*.hea"))
    ecgs, dx, fu = [], [], []
    base = np.datetime64("2015-01-01")
    for i, stem in enumerate(stems):
        ecgs.append({"ecg_id": stem, "patient_id": f"P{i % 20}", "acquisition_time": str(base + (i * 37) % 1500)})
    for p in range(20):
        h = zlib.crc32(f"P{p}".encode())
        for j in range(6):
            code = CODES[(h >> j) % len(CODES)]
            dx.append({"patient_id": f"P{p}", "code": code, "vocabulary": "ICD10CM",
                       "date": str(base + int((h >> (2 * j)) % 2600) - 300)})
        if p % 10 != 9:  # two patients without a follow-up row
            end = base + 1500 + int(h % 1500) - (1400 if p % 7 == 0 else 0)  # some end before later ECGs
            death = str(end - int(h % 200)) if p % 4 == 0 else ""
            fu.append({"patient_id": f"P{p}", "end_of_follow_up": str(end), "death_date": death,
                       "sex": "M" if p % 2 else "F"})
    paths = {}
    for name, rows in (("ecgs", ecgs), ("diagnoses", dx), ("follow_up", fu)):
        paths[name] = out / f"{name}.csv"
        pd.DataFrame(rows).to_csv(paths[name], index=False)
    paths["map"] = out / "map.csv"
    paths["map"].write_text(MAP)
    return paths


@pytest.fixture(scope="module")
def ehr_targets(assets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ehr_e2e")
    paths = write_synthetic_ehr(assets / "data" / "cinc2021", tmp)
    argv = ["build-targets", "--ecgs", str(paths["ecgs"]), "--diagnoses", str(paths["diagnoses"]), "--follow-up",
            str(paths["follow_up"]), "--map", str(paths["map"]), "--min-cases", "2", "--out", str(tmp / "targets")]
    assert cli_main(argv) == 0
    return tmp


def test_dataset_batches_expand_like_the_targets(assets, ehr_targets):
    targets = SparseTargets.load(ehr_targets / "targets")
    assert len(targets) == 50 and len(targets.label_space) >= 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = build_ehr_dataset(assets / "data" / "cinc2021", ehr_targets / "targets", cache_dir=ehr_targets / "cache")
    assert set(EHR_COLUMNS) <= set(ds.column_names) and "labels" not in ds.column_names  # nothing dense stored
    index = condition_index(ds)
    rows = [ds[i] for i in range(len(ds))]
    got = expand_rows(rows, index)
    want = targets.expand([list(targets.ecg_ids).index(r["record_id"]) for r in rows])
    for key in ("labels", "label_mask", "events", "at_risk_mask"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    np.testing.assert_array_equal(np.isnan(got["event_times"]), np.isnan(want["event_times"]))
    np.testing.assert_allclose(np.nan_to_num(got["event_times"]), np.nan_to_num(want["event_times"]), rtol=0, atol=1e-12)
    # the synthetic EHR exercises prevalent, incident, censored, masked (sex, exclusion, follow-up) cells
    assert want["labels"].sum() > 5 and want["events"].sum() > 3 and (~want["label_mask"]).sum() > 5
    assert (~want["at_risk_mask"] & want["label_mask"]).sum() > 5


ROOT = Path(__file__).resolve().parent.parent


def test_build_dataset_train_evaluate_and_load(assets, ehr_targets):
    import torch
    from transformers import AutoModel, pipeline

    tmp = ehr_targets
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli_main(["build-dataset", "--records", str(assets / "data" / "cinc2021"), "--targets",
                         str(tmp / "targets"), "--out", str(tmp / "cohort"), "--split", "train=0.6,validation=0.2,test=0.2",
                         "--cache-dir", str(tmp / "cache2")])
    assert code == 0
    space = SparseTargets.load(tmp / "targets").label_space

    recipe = _recipe("profiling")
    from anyecg_hf import training as common

    cfg = common.load_config(ROOT / "recipes" / "configs" / "profiling_phecodes.yaml", [
        f"data.dataset={tmp / 'cohort'}", f"training.output_dir={tmp / 'run'}", "training.max_steps=4",
        "training.batch_size=10", "training.eval_every=2", "training.save_every=0",
        "training.log_with=none", "training.progress_bar=false", "evaluation.n_bootstrap=0", "data.num_workers=0",
        "data.preprocess.num_proc=null"])
    cfg["model"] = {"init": "config", "config": {**TINY, "risk_head_type": "cox", "risk_horizons": [1, 2]}}
    cfg["data"]["feature_extractor"] = {"backend": "scipy"}
    cfg["training"]["mixed_precision"] = "no"
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    _reset_accelerate()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = recipe.run(common.load_config(path))
    finally:
        _reset_accelerate()
        torch.set_num_threads(n)
    assert np.isfinite(result["final_metrics"]["eval_loss"])
    final = tmp / "run" / "final"
    model = AutoModel.from_pretrained(final)
    assert type(model).__name__ == "AnyECGForHealthProfiling"
    assert model.config.label_space.ids == space.ids and model.config.risk_label_space.ids == space.ids
    assert model.config.label_space[0].code_system == "phecode" and "Hypertension" in model.config.label_space.names
    assert len(model.config.diagnosis_pos_weight) == len(space)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli_main(["evaluate", "--model", str(final), "--dataset", str(tmp / "cohort"), "--split", "test",
                         "--out", str(tmp / "report"), "--n-bootstrap", "10"])
    assert code == 0
    ph = tmp / "report" / "phecodes"
    th = pd.read_csv(ph / "thresholds.csv")
    assert set(th["cutoff"]) == {0.7, 0.8, 0.9} and set(th["metric"]) <= {"auroc", "harrell_c"}
    cats = pd.read_csv(ph / "categories.csv")
    assert set(cats["category"]) <= {"circulatory system", "endocrine/metabolic", "neoplasms"}
    assert (ph / "phecode_summary.md").exists() and (ph / "forest_category_auroc.png").exists()
    assert {"condition_a", "condition_b"} <= set(pd.read_csv(ph / "comorbidity" / "comorbidity_pairs.csv").columns)
    cooc = pd.read_csv(ph / "comorbidity" / "cooccurrence_observed.csv", index_col=0)
    assert cooc.shape == (len(space), len(space)) and set(cooc.index) == set(space.names)  # the phecode space

    pipe = pipeline("ecg-profiling", model=str(final))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(str(assets / "data" / "cinc2021" / "HR06000.hea"))
    text = json.dumps(out, default=str)
    assert any(name in text for name in space.names), text[:500]
