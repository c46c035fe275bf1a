"""ecg-profiling / ecg-classification / ecg-embedding pipelines: scores equal a manual feature-extractor + model
forward, batched equals single, every shared format runs, long records are windowed and aggregated, risk heads give
horizons, and the parity-fixture model reproduces the reference ECGFounder outputs from the raw files."""

import math

import numpy as np
import pytest
import torch
from transformers import pipeline

import anyecg_hf  # noqa: F401  (registers the tasks)
from anyecg_hf import AnyECGForDiagnosis, AnyECGForHealthProfiling, AnyECGForRiskPrediction, LabelSpace
from anyecg_hf.io import read_ecg
from anyecg_hf.pipelines import aggregate_windows, profile_records, profile_rows
from anyecg_hf.processing import AnyECGFeatureExtractor
from anyecg_hf.testing import tiny_config

pytestmark = pytest.mark.floors  # also run with the lowest declared dependency versions (.ci/run)

CINC = ["HR06000", "HR06001", "JS20000", "E07500"]

SPACE = LabelSpace([
    {"id": "af", "name": "ATRIAL FIBRILLATION", "code_system": "SNOMED-CT", "code": "164889003", "threshold": 0.3},
    {"id": "sb", "name": "SINUS BRADYCARDIA", "code_system": "SNOMED-CT", "code": "426177001"},
    {"id": "rbbb", "name": "RIGHT BUNDLE BRANCH BLOCK", "code_system": "ICD-10", "code": "I45.1", "threshold": 0.7},
])
RISK_SPACE = LabelSpace([
    {"id": "hf", "name": "Heart failure", "code_system": "ICD-10", "code": "I50"},
    {"id": "af_new", "name": "Incident AF", "code_system": "ICD-10", "code": "I48"},
])


def _save(model, path):
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = AnyECGForDiagnosis(tiny_config(label_space=SPACE)).eval()
    # spread the head so that scores differ clearly between records and labels
    with torch.no_grad():
        model.classifier.weight.mul_(40)
    return _save(model, tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_pipe(tiny_dir):
    return pipeline("ecg-profiling", model=tiny_dir, device="cpu")


def _paths(assets, names=CINC):
    return [str(assets / "data" / "cinc2021" / f"{n}.hea") for n in names]


def _manual_probs(pipe, record, windowing="sliding", how="mean"):
    fe = AnyECGFeatureExtractor.from_model_config(pipe.model.config, windowing=windowing)
    batch = fe(record, return_tensors="pt", return_window_index=True)
    index = batch.pop("window_to_record").numpy()
    with torch.no_grad():
        probs = torch.sigmoid(pipe.model(**batch).logits).numpy()
    return aggregate_windows(probs, index, how=how)[0]


def test_tasks_registered_and_feature_extraction_untouched():
    from transformers.pipelines import PIPELINE_REGISTRY

    tasks = PIPELINE_REGISTRY.supported_tasks
    assert {"ecg-profiling", "ecg-classification", "ecg-embedding"} <= set(tasks)
    impl = tasks["feature-extraction"]["impl"]
    assert "FeatureExtractionPipeline" in (impl if isinstance(impl, str) else impl.__name__)
    assert tasks["ecg-profiling"]["impl"].__name__ == "ECGProfilingPipeline"


def test_profile_scores_equal_manual_forward_with_label_space(tiny_pipe, assets):
    path = _paths(assets)[0]
    out = tiny_pipe(path)
    assert out["record"] == "HR06000" and out["risks"] == [] and out["warnings"] == []
    expected = _manual_probs(tiny_pipe, read_ecg(path))
    got = {d["id"]: d for d in out["diagnoses"]}
    for i, cond in enumerate(SPACE):
        d = got[cond.id]
        assert abs(d["score"] - expected[i]) <= 1e-6
        assert (d["label"], d["code_system"], d["code"]) == (cond.name, cond.code_system, cond.code)
        assert d["threshold"] == cond.decision_threshold
        assert d["positive"] == (expected[i] >= cond.decision_threshold)
    scores = [d["score"] for d in out["diagnoses"]]
    assert scores == sorted(scores, reverse=True) and len(set(np.round(scores, 3))) == 3
    # top_k / threshold / only_positive
    assert [d["id"] for d in tiny_pipe(path, top_k=1)["diagnoses"]] == [out["diagnoses"][0]["id"]]
    t = float(np.median(expected))
    over = tiny_pipe(path, threshold=t)["diagnoses"]
    assert [d["positive"] for d in over] == [s >= t for s in scores] and {d["threshold"] for d in over} == {t}
    pos = tiny_pipe(path, only_positive=True, threshold=t)["diagnoses"]
    assert [d["id"] for d in pos] == [d["id"] for d in over if d["positive"]]


def test_batched_list_equals_single_calls(tiny_pipe, assets):
    paths = _paths(assets)
    singles = [tiny_pipe(p) for p in paths]
    batched = tiny_pipe(paths, batch_size=3)
    streamed = list(tiny_pipe((p for p in paths), batch_size=2))  # generator in, iterator out
    for a, b, c in zip(singles, batched, streamed):
        assert a["record"] == b["record"] == c["record"]
        sa = {d["id"]: d["score"] for d in a["diagnoses"]}
        for other in (b, c):
            so = {d["id"]: d["score"] for d in other["diagnoses"]}
            assert max(abs(sa[k] - so[k]) for k in sa) <= 1e-6
    assert [b["record"] for b in batched] == CINC


def test_inputs_array_record_dict_agree(tiny_pipe, assets):
    rec = read_ecg(_paths(assets)[1])
    by_path = tiny_pipe(rec.source)
    by_record = tiny_pipe(rec)
    by_array = tiny_pipe(rec.signal, sampling_rate=rec.sampling_rate, lead_names=rec.lead_names)
    by_dict = tiny_pipe({"signal": torch.from_numpy(rec.signal), "sampling_rate": rec.sampling_rate, "record": "x1"})
    ref = {d["id"]: d["score"] for d in by_path["diagnoses"]}
    for other in (by_record, by_array, by_dict):
        assert {d["id"]: d["score"] for d in other["diagnoses"]} == pytest.approx(ref, abs=1e-6)
    assert by_record["record"] == "HR06001" and by_array["record"] is None and by_dict["record"] == "x1"
    with pytest.raises(ValueError, match="sampling_rate"):
        tiny_pipe(rec.signal)
    with pytest.raises(ValueError, match="signal.T"):
        tiny_pipe(rec.signal.T.copy(), sampling_rate=500)


def test_long_record_sliding_windows_mean_and_max(tiny_pipe):
    rng = np.random.default_rng(3)
    t = np.arange(int(500 * 23.3)) / 500
    x = (np.sin(2 * np.pi * 1.2 * t) * (1 + t / 10))[None] * rng.uniform(0.5, 1.5, (12, 1)) + 0.05 * rng.standard_normal((12, t.size))
    x = x.astype(np.float32)
    fe = AnyECGFeatureExtractor.from_model_config(tiny_pipe.model.config, windowing="sliding")
    assert fe(x, sampling_rate=500, return_tensors="pt")["input_values"].shape[0] == 3  # 0-10, 10-20, 13.3-23.3 s
    for how in ("mean", "max"):
        out = tiny_pipe(x, sampling_rate=500, aggregation=how)
        batch = fe(x, sampling_rate=500, return_tensors="pt")
        with torch.no_grad():
            p = torch.sigmoid(tiny_pipe.model(**batch).logits).numpy()
        expected = p.mean(0) if how == "mean" else p.max(0)
        got = {d["id"]: d["score"] for d in out["diagnoses"]}
        assert [got[c.id] for c in SPACE] == pytest.approx(expected.tolist(), abs=1e-6)
    first = tiny_pipe(x, sampling_rate=500, windowing="first")
    assert {d["id"]: d["score"] for d in first["diagnoses"]} == pytest.approx(dict(zip(SPACE.ids, p[0].tolist())), abs=1e-6)


def test_every_shared_format_runs(tiny_pipe, assets):
    files = [assets / "data" / "cinc2021" / "E07501.hea", *sorted((assets / "data" / "formats").iterdir())]
    assert len(files) == 5
    results = tiny_pipe([str(f) for f in files], batch_size=4)
    for f, r in zip(files, results):
        assert r["record"] == f.stem and "error" not in r, r
        assert len(r["diagnoses"]) == 3 and all(0 < d["score"] < 1 for d in r["diagnoses"])
        manual = _manual_probs(tiny_pipe, read_ecg(f))
        assert [{d["id"]: d["score"] for d in r["diagnoses"]}[c.id] for c in SPACE] == pytest.approx(manual.tolist(), abs=1e-6)


def test_on_error_return_reports_and_continues(tiny_pipe, assets, tmp_path):
    bad = tmp_path / "broken.xml"
    bad.write_text("<RestingECG><Waveform>not base64!</Waveform></RestingECG>")
    good = _paths(assets)[0]
    with pytest.raises(ValueError, match="broken.xml"):
        tiny_pipe([str(bad), good])
    ref = tiny_pipe(good)["diagnoses"][0]["score"]
    out = tiny_pipe([str(bad), good, good, str(tmp_path / "missing.hea"), str(bad)], on_error="return", batch_size=2)
    assert out[0]["record"] == "broken" and "broken.xml" in out[0]["error"] and out[0]["diagnoses"] == []
    for i in (1, 2):  # good records batched with failed ones (first or second in their batch) are unaffected
        assert "error" not in out[i] and out[i]["diagnoses"][0]["score"] == pytest.approx(ref, abs=1e-6)
    assert out[3]["record"] == "missing" and out[3]["error"] and out[4]["record"] == "broken"
    emb = pipeline("ecg-embedding", model=tiny_pipe.model, device="cpu")(
        [good, str(bad)], on_error="return", batch_size=2)
    assert emb[0]["embedding"].shape == (32,) and emb[1]["embedding"] is None and "broken.xml" in emb[1]["error"]


def test_quality_warnings_in_results(tiny_pipe, assets):
    rec = read_ecg(_paths(assets)[0])
    sig = rec.signal.copy()
    sig[rec.lead_names.index("V2")] = 0.0
    out = tiny_pipe({"signal": sig, "sampling_rate": rec.sampling_rate, "lead_names": rec.lead_names})
    assert any("V2" in w and "flat" in w for w in out["warnings"]), out["warnings"]
    assert tiny_pipe(_paths(assets)[0], quality=False)["warnings"] == []


def test_classification_and_embedding(tiny_dir, tiny_pipe, assets):
    path = _paths(assets)[2]
    clf = pipeline("ecg-classification", model=tiny_dir, device="cpu")
    out = clf(path)
    prof = tiny_pipe(path)
    assert out == [{"label": d["label"], "score": pytest.approx(d["score"], abs=1e-6)} for d in prof["diagnoses"]]
    assert len(clf(path, top_k=1)) == 1
    assert all(r["score"] >= 0.5 for r in clf(path, threshold=0.5))
    emb = pipeline("ecg-embedding", model=tiny_dir, device="cpu")
    e = emb(path)
    fe = AnyECGFeatureExtractor.from_model_config(emb.model.config)
    with torch.no_grad():
        ref = emb.model(**fe(read_ecg(path), return_tensors="pt")).pooler_output[0].numpy()
    assert e["record"] == "JS20000" and e["embedding"].dtype == np.float32 and e["embedding"].shape == (32,)
    np.testing.assert_allclose(e["embedding"], ref, atol=1e-6)
    batched = emb(_paths(assets), batch_size=4, return_tensors=True)
    assert torch.allclose(batched[2]["embedding"], torch.from_numpy(ref), atol=1e-6)


@pytest.fixture(scope="module")
def profiling_dir(tmp_path_factory):
    torch.manual_seed(1)
    cfg = tiny_config(label_space=SPACE, risk_label_space=RISK_SPACE, risk_head_type="discrete",
                      regression_names=["age"], regression_target_mean=[60.0], regression_target_std=[15.0])
    cfg.architectures = ["AnyECGForHealthProfiling"]
    model = AnyECGForHealthProfiling(cfg).eval()
    with torch.no_grad():
        model.risk_head.linear.weight.mul_(30)
    return _save(model, tmp_path_factory.mktemp("hp"))


def test_risk_head_gives_horizons_equal_to_forward(profiling_dir, assets):
    pipe = pipeline("ecg-profiling", model=profiling_dir, device="cpu")
    assert type(pipe.model).__name__ == "AnyECGForHealthProfiling"  # head from config.architectures
    path = _paths(assets)[0]
    out = pipe(path)
    fe = AnyECGFeatureExtractor.from_model_config(pipe.model.config)
    with torch.no_grad():
        ref = pipe.model(**fe(read_ecg(path), return_tensors="pt"))
    inc = ref.cumulative_incidence[0].numpy()
    assert len(out["risks"]) == 2 and len(out["diagnoses"]) == 3
    for r in out["risks"]:
        c = RISK_SPACE.index(r["id"])
        assert list(r["horizons"]) == [1, 5, 10]
        assert [r["horizons"][h] for h in (1, 5, 10)] == pytest.approx(inc[c].tolist(), abs=1e-6)
        assert r["risk_score"] == pytest.approx(float(ref.risk_scores[0, c]), abs=1e-6)
        assert r["code"] == RISK_SPACE[c].code
        assert all(0 <= v <= 1 for v in r["horizons"].values())
        assert r["horizons"][1] <= r["horizons"][5] <= r["horizons"][10]
    assert out["traits"][0]["name"] == "age" and out["traits"][0]["value"] == pytest.approx(float(ref.regression_outputs[0, 0]), abs=1e-4)
    # a subset of the model's horizons, and a horizon computed from the time bins
    sub = pipe(path, horizons=[5])
    assert all(list(r["horizons"]) == [5] for r in sub["risks"])
    custom = pipe(path, horizons=[2.5, 10])
    with torch.no_grad():
        at = pipe.model.cumulative_incidence_at(ref, [2.5, 10])[0].numpy()
    for r in custom["risks"]:
        c = RISK_SPACE.index(r["id"])
        assert [r["horizons"][2.5], r["horizons"][10]] == pytest.approx(at[c].tolist(), abs=1e-6)
    rows = profile_rows(out)
    assert [r["kind"] for r in rows] == ["diagnosis"] * 3 + ["risk"] * 2 + ["trait"]
    assert {"risk_1y", "risk_5y", "risk_10y"} <= set(rows[0]) and rows[3]["risk_10y"] == out["risks"][0]["horizons"][10]


def test_risk_only_and_unfitted_cox(tmp_path, assets):
    torch.manual_seed(2)
    cfg = tiny_config(label_space=SPACE, risk_label_space=RISK_SPACE, risk_head_type="cox")
    cfg.architectures = ["AnyECGForRiskPrediction"]
    folder = _save(AnyECGForRiskPrediction(cfg).eval(), tmp_path / "risk")
    pipe = pipeline("ecg-profiling", model=folder, device="cpu")
    out = pipe(_paths(assets)[0])
    assert out["diagnoses"] == [] and len(out["risks"]) == 2
    assert all(r["risk_score"] is not None and all(v is None for v in r["horizons"].values()) for r in out["risks"])
    assert any("no baseline hazard" in w for w in out["warnings"])
    with pytest.raises(ValueError, match="diagnosis head"):
        pipeline("ecg-classification", model=folder, device="cpu")
    base = tmp_path / "base"
    from anyecg_hf import AnyECGModel

    AnyECGModel(tiny_config()).save_pretrained(base)
    with pytest.raises(ValueError, match="ecg-embedding"):
        pipeline("ecg-profiling", model=str(base), device="cpu")
    assert pipeline("ecg-embedding", model=str(base), device="cpu")(_paths(assets)[0])["embedding"].shape == (32,)
    # the same Cox model once a baseline hazard is set: absolute risks equal the model's forward
    grid = np.linspace(0, 12, pipe.model.config.risk_baseline_grid_size)
    pipe.model.risk_head.set_baseline(grid, np.stack([0.01 * grid, 0.03 * grid ** 1.2]), [True, True])
    out = pipe(_paths(assets)[0], horizons=[1, 10])
    fe = AnyECGFeatureExtractor.from_model_config(pipe.model.config)
    with torch.no_grad():
        ref = pipe.model(**fe(read_ecg(_paths(assets)[0]), return_tensors="pt"))
    for r in out["risks"]:
        c = RISK_SPACE.index(r["id"])
        assert [r["horizons"][1], r["horizons"][10]] == pytest.approx(ref.cumulative_incidence[0, c, [0, 2]].tolist(), abs=1e-6)
    assert not any("no baseline hazard" in w for w in out["warnings"])


def test_parity_fixture_model_reproduces_reference_from_raw_files(tmp_path, assets, parity, ecgfounder_pth_12):
    """Seeded ECGFounder weights converted with `anyecg convert-ecgfounder`: the pipeline, fed the raw WFDB files,
    gives the reference implementation's outputs (reference preprocessing + reference network)."""
    from anyecg_hf.cli import main

    out_dir = tmp_path / "ecgfounder"
    assert main(["convert-ecgfounder", str(ecgfounder_pth_12), str(out_dir)]) == 0
    pipe = pipeline("ecg-profiling", model=str(out_dir), device="cpu")
    names = ["HR06000", "JS20000", "E07500"]  # rows 0-2 of the fixture
    results = pipe(_paths(assets, names), batch_size=3)
    reference = 1 / (1 + np.exp(-np.load(parity / "logits_12lead.npy")[:3].astype(np.float64)))
    labels = pipe.model.config.label_space
    for i, r in enumerate(results):
        got = {d["id"]: d["score"] for d in r["diagnoses"]}
        probs = np.array([got[c.id] for c in labels])
        assert len(probs) == 150 and np.abs(probs - reference[i]).max() < 2e-6  # measured 2.9e-7
    # and a manual extractor + model forward agrees to float precision
    fe = AnyECGFeatureExtractor.from_model_config(pipe.model.config)
    with torch.no_grad():
        manual = torch.sigmoid(pipe.model(**fe([read_ecg(p) for p in _paths(assets, names)], return_tensors="pt")).logits).numpy()
    got0 = {d["id"]: d["score"] for d in results[0]["diagnoses"]}
    assert np.abs(np.array([got0[c.id] for c in labels]) - manual[0]).max() <= 1e-6


def test_profile_records_and_rows_format():
    cfg = tiny_config(label_space=SPACE, risk_label_space=RISK_SPACE)
    outputs = {"probabilities": np.array([0.35, 0.9, 0.69]), "risk_scores": np.array([0.2, 1.5]),
               "cumulative_incidence": np.array([[0.01, 0.05, 0.2], [0.02, np.nan, 0.4]])}
    p = profile_records(outputs, cfg, record="r1", warnings=["lead V2 is flat"])
    assert [d["id"] for d in p["diagnoses"]] == ["sb", "rbbb", "af"]
    assert [d["positive"] for d in p["diagnoses"]] == [True, False, True]  # thresholds 0.5, 0.7, 0.3
    assert [r["id"] for r in p["risks"]] == ["af_new", "hf"]  # sorted by 10-year risk
    assert p["risks"][0]["horizons"] == {1: 0.02, 5: None, 10: 0.4}
    p2 = profile_records(outputs, cfg, top_k=1, horizons=[10], threshold=0.95)
    assert len(p2["diagnoses"]) == 1 and p2["diagnoses"][0]["positive"] is False
    assert p2["risks"] == [{"id": "af_new", "label": "Incident AF", "code": "I48", "risk_score": 1.5, "horizons": {10: 0.4}}]
    with pytest.raises(ValueError, match="not available"):
        profile_records(outputs, cfg, horizons=[3])
    with pytest.raises(ValueError, match="label space of 3"):
        profile_records({"probabilities": np.zeros(4)}, cfg)
    rows = profile_rows(p)
    assert len(rows) == 5 and all(list(r) == list(rows[0]) for r in rows)
    assert rows[0]["warnings"] == "lead V2 is flat" and rows[3]["risk_1y"] == 0.02 and rows[3]["rank"] == 1
    empty = profile_rows(profile_records({"probabilities": np.array([0.1, 0.1, 0.1])}, cfg, only_positive=True, record="r2"))
    assert [(r["record"], r["kind"]) for r in empty] == [("r2", "none")]


def test_aggregate_windows_matches_loop():
    rng = np.random.default_rng(0)
    v = rng.random((9, 4))
    idx = np.array([0, 0, 1, 2, 2, 2, 1, 0, 2])
    mean, mx = aggregate_windows(v, idx, "mean"), aggregate_windows(v, idx, "max")
    for r in range(3):
        np.testing.assert_allclose(mean[r], v[idx == r].mean(0), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(mx[r], v[idx == r].max(0))
    v[4, 1] = np.nan
    assert math.isnan(aggregate_windows(v, idx, "max")[2, 1]) and math.isnan(aggregate_windows(v, idx, "mean")[2, 1])
    assert np.isnan(aggregate_windows(v, idx, "mean", num_records=4)[3]).all()
    with pytest.raises(ValueError, match="window_to_record"):
        aggregate_windows(v, idx[:-1])


def test_generator_input_is_streamed_lazily(tiny_pipe, assets):
    consumed = []

    def paths():
        for p in _paths(assets) * 3:  # 12 inputs
            consumed.append(p)
            yield p

    results = tiny_pipe(paths(), batch_size=2)
    first = next(iter(results))
    assert first["record"] == "HR06000"
    assert len(consumed) <= 4  # one batch ahead at most, not the whole input
    assert len(list(results)) == 11 and len(consumed) == 12


def test_resolve_local_checkpoint_and_extractor_fallback(tmp_path, assets, monkeypatch):
    import os

    from test_pipelines_default_model import tiny_ecgfounder_checkpoint

    from anyecg_hf.pipelines import load_model_and_extractor, resolve_model

    pth = tiny_ecgfounder_checkpoint(tmp_path / "my.pth")
    folder = resolve_model(str(pth), cache_dir=tmp_path / "cache")
    assert os.path.basename(folder).startswith("converted-") and resolve_model(str(pth), cache_dir=tmp_path / "cache") == folder
    assert resolve_model(folder) == folder  # a model folder is returned as is
    from anyecg_hf.prediction import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="does not exist"):  # a missing folder never goes to the Hub
        resolve_model(str(tmp_path / "x"))
    with monkeypatch.context() as m:
        m.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(ModelNotFoundError, match="not in the cache"):  # uncached Hub id, offline: at once
            resolve_model("org/some-model")
    os.remove(os.path.join(folder, "preprocessor_config.json"))  # e.g. a folder written by plain transformers code
    model, fe = load_model_and_extractor(folder)
    assert type(model).__name__ == "AnyECGForDiagnosis" and not model.training
    assert (fe.sampling_rate, fe.num_samples, list(fe.lead_names)) == (500, 5000, model.config.lead_names)
    out = pipeline("ecg-profiling", model=folder, device="cpu")(_paths(assets)[0], top_k=2)
    assert len(out["diagnoses"]) == 2 and out["diagnoses"][0]["label"] in model.config.label_space.names
    # ecg_pipeline applies the factory to an original checkpoint (converted into ANYECG_CACHE)
    from anyecg_hf.pipelines import ecg_pipeline

    monkeypatch.setenv("ANYECG_CACHE", str(tmp_path / "env_cache"))
    clf = ecg_pipeline("ecg-classification", str(pth), device="cpu")
    assert clf.model.name_or_path.startswith(str(tmp_path / "env_cache"))
    assert [r["label"] for r in clf(_paths(assets)[0], top_k=2)] == [d["label"] for d in out["diagnoses"]]


def test_precision_kwarg_runs_the_model_under_autocast(tiny_dir, tiny_pipe, assets, monkeypatch):
    """`precision="bf16"` (constructor or call) = the manual forward under bf16 autocast; fp32 is unchanged; fp16 on
    a CPU without native float16 is refused."""
    from anyecg_hf.runtime import precision as P

    path = _paths(assets)[0]
    fe = AnyECGFeatureExtractor.from_model_config(tiny_pipe.model.config)
    batch = fe(read_ecg(path), return_tensors="pt")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref16 = torch.sigmoid(tiny_pipe.model(**batch).logits.float())[0].numpy()
    scores = lambda out: np.array([d["score"] for d in sorted(out["diagnoses"], key=lambda d: d["id"])])  # noqa: E731
    order = np.argsort([c.id for c in tiny_pipe.model.config.label_space])
    fp32 = scores(tiny_pipe(path))
    bf16 = scores(pipeline("ecg-profiling", model=tiny_dir, device="cpu", precision="bf16")(path))
    np.testing.assert_allclose(bf16, ref16[order], atol=1e-6)
    assert 0 < np.abs(bf16 - fp32).max() < 0.02
    np.testing.assert_allclose(scores(tiny_pipe(path, precision="bf16")), bf16, atol=1e-6)
    np.testing.assert_allclose(scores(tiny_pipe(path, precision="fp32")), fp32, atol=0)
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    with pytest.raises(ValueError, match="no native float16"):
        tiny_pipe(path, precision="fp16")
