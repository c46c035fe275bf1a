"""`anyecg profile` / `anyecg embed` from the shell: rows, scores against a manual forward, unreadable files,
exit codes, the offline default-model message. Main paths run in a subprocess exactly as users run them."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from anyecg_hf.cli import main as cli_main
from anyecg_hf.testing import tiny_config

N_RECORDS = 5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    env = dict(os.environ)
    env.update(PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""), OMP_NUM_THREADS="1", **extra)
    return env


def _cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "anyecg_hf.cli", *map(str, args)], capture_output=True, text=True,
                          env=env or _env(), timeout=timeout)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from anyecg_hf import AnyECGForDiagnosis

    torch.manual_seed(0)
    model = AnyECGForDiagnosis(tiny_config())
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)  # spread the probabilities so that rankings and thresholds matter
    path = tmp_path_factory.mktemp("model") / "tiny"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sample_dir(assets, tmp_path_factory):
    """A few CinC records (copied: .hea + .mat) plus a corrupt header and a truncated XML."""
    d = tmp_path_factory.mktemp("ecgs")
    names = sorted(p.stem for p in (assets / "data" / "cinc2021").glob("*.hea"))[:N_RECORDS]
    for n in names:
        for ext in (".hea", ".mat"):
            shutil.copy(assets / "data" / "cinc2021" / f"{n}{ext}", d / f"{n}{ext}")
    (d / "B_corrupt.hea").write_text("this is not a WFDB header\n")
    (d / "truncated.xml").write_text("<RestingECG><Waveform>")
    (d / "notes.txt").write_text("not an ECG: ignored by the folder walk")
    return d, names


def _manual_probs(model_dir, paths):
    """Reference: read_ecg + the model folder's feature extractor + forward, one record at a time."""
    from anyecg_hf import AnyECGFeatureExtractor, AnyECGForDiagnosis, read_ecg

    fe = AnyECGFeatureExtractor.from_pretrained(model_dir)
    model = AnyECGForDiagnosis.from_pretrained(model_dir).eval()
    out = {}
    with torch.no_grad():
        for p in paths:
            x = fe([read_ecg(p)], return_tensors="pt")
            out[str(p)] = torch.sigmoid(model(input_values=x["input_values"], lead_mask=x["lead_mask"]).logits)[0].numpy()
    return out, model.config


def test_profile_csv_rows_match_manual_forward_and_skip_corrupt(tiny_model, sample_dir, tmp_path):
    d, names = sample_dir
    out = tmp_path / "profile.csv"
    res = _cli("profile", d, "--model", tiny_model, "--out", out, "--top-k", 2, "--workers", 1)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    # the unreadable files are reported at the end, by name
    assert "2 input(s) could not be read" in res.stderr
    assert "B_corrupt.hea" in res.stderr and "truncated.xml" in res.stderr
    assert f"{N_RECORDS} ECGs processed" in res.stderr

    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 2 * N_RECORDS  # top-2 per record
    ref, config = _manual_probs(tiny_model, [d / f"{n}.hea" for n in names])
    labels = config.label_space.names
    by_record = {}
    for r in rows:
        by_record.setdefault(r["path"], []).append(r)
    assert sorted(by_record) == sorted(ref)
    for path, rs in by_record.items():
        probs = ref[path]
        order = np.argsort(-probs)[:2]
        assert [r["label"] for r in rs] == [labels[i] for i in order]
        assert [int(r["rank"]) for r in rs] == [1, 2]
        np.testing.assert_allclose([float(r["score"]) for r in rs], probs[order], rtol=0, atol=1e-6)
        assert [r["positive"] == "True" for r in rs] == [bool(probs[i] >= 0.5) for i in order]
        assert rs[0]["record_id"] == os.path.basename(path)[:-4]
    errors = list(csv.DictReader(open(tmp_path / "profile.errors.csv")))
    assert sorted(os.path.basename(e["path"]) for e in errors) == ["B_corrupt.hea", "truncated.xml"]
    assert all(e["error_class"] == "ECGReadError" and e["message"] for e in errors)
    assert not (tmp_path / "profile.csv.parts").exists()  # shards of a single-file output are removed after it


def test_nothing_readable_exits_nonzero(tiny_model, tmp_path, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "a.hea").write_text("garbage\n")
    (d / "b.xml").write_text("<AnnotatedECG>")
    assert cli_main(["profile", str(d), "--model", str(tiny_model), "--out", str(tmp_path / "p.csv"),
                     "--workers", "0", "--no-progress"]) == 1
    assert "2 input(s) could not be read" in capsys.readouterr().err
    # usage errors are 2: no such input, an empty folder, a model that cannot be loaded is 3
    assert cli_main(["profile", str(tmp_path / "missing"), "--model", str(tiny_model)]) == 2
    (tmp_path / "empty").mkdir()
    assert cli_main(["profile", str(tmp_path / "empty"), "--model", str(tiny_model), "--out", str(tmp_path / "e.csv")]) == 2
    assert "no ECG files found" in capsys.readouterr().err
    assert cli_main(["profile", str(d), "--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "m.csv")]) == 3


def test_offline_default_model_fails_fast_with_instructions(sample_dir, tmp_path):
    d, names = sample_dir
    home = tmp_path / "hf_home"
    home.mkdir()
    env = _env(HF_HUB_OFFLINE="1", HF_HOME=str(home), ANYECG_CACHE=str(home / "anyecg"))
    env.pop("HF_HUB_CACHE", None)
    res = _cli("profile", d / f"{names[0]}.hea", "--out", tmp_path / "p.csv", env=env, timeout=120)
    assert res.returncode == 3
    assert "Traceback" not in res.stderr
    assert "--model PATH" in res.stderr and "HF_HUB_OFFLINE" in res.stderr and str(home) in res.stderr


def test_json_parquet_and_resume_in_process(tiny_model, sample_dir, tmp_path, capsys):
    d, names = sample_dir
    # JSON: the same rows as CSV (one per record and condition), all conditions without --top-k
    out = tmp_path / "p.json"
    assert cli_main(["profile", str(d), "--model", str(tiny_model), "--out", str(out), "--workers", "0",
                     "--threshold", "0.3", "--no-progress"]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 3 * N_RECORDS and {r["kind"] for r in rows} == {"diagnosis"}
    assert all(r["positive"] == (r["score"] >= 0.3) and r["threshold"] == 0.3 for r in rows)
    assert len(json.loads((tmp_path / "p.errors.json").read_text())) == 2

    # Parquet folder: one row per record, probabilities vector + label names in the metadata
    pq_dir = tmp_path / "parquet"
    assert cli_main(["profile", str(d), "--model", str(tiny_model), "--out", str(pq_dir), "--workers", "0",
                     "--limit", "4", "--no-progress"]) == 0
    df = pd.read_parquet(pq_dir)
    assert len(df) == 3  # --limit 4 takes the first 4 inputs of the sorted walk: 3 records + B_corrupt.hea
    manifest = json.loads((pq_dir / "_SUCCESS").read_text())
    assert manifest["rows"] == 3 and manifest["errors"] == 1 and manifest["inputs"] == 4
    assert manifest["diagnosis_labels"] == ["AF", "SB", "STACH"]
    assert manifest["model"] == str(tiny_model) and manifest["model_revision"].startswith("sha256:")
    ref, _ = _manual_probs(tiny_model, df.path)
    np.testing.assert_allclose(np.stack(df.probabilities), np.stack([ref[p] for p in df.path]), atol=1e-6)
    assert set(df.model) == {str(tiny_model)} and json.loads(df.preprocessing[0])["sampling_rate"] == 500

    # an earlier run without --resume/--overwrite is refused; --resume without --limit does only the rest
    assert cli_main(["profile", str(d), "--model", str(tiny_model), "--out", str(pq_dir)]) == 2
    capsys.readouterr()
    assert cli_main(["profile", str(d), "--model", str(tiny_model), "--out", str(pq_dir), "--workers", "0",
                     "--resume", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"{N_RECORDS - 3} ECGs processed, 4 skipped" in err and "1 failed" in err
    df = pd.read_parquet(pq_dir)
    assert len(df) == N_RECORDS and df.path.is_unique


def test_embed_is_pooler_output(tiny_model, sample_dir, tmp_path):
    from anyecg_hf import AnyECGFeatureExtractor, AnyECGForDiagnosis, read_ecg

    d, names = sample_dir
    out = tmp_path / "emb"
    assert cli_main(["embed", str(d), "--model", str(tiny_model), "--out", str(out), "--workers", "0",
                     "--no-progress"]) == 0
    df = pd.read_parquet(out)
    fe = AnyECGFeatureExtractor.from_pretrained(tiny_model)
    model = AnyECGForDiagnosis.from_pretrained(tiny_model).eval()
    x = fe([read_ecg(p) for p in df.path], return_tensors="pt")
    with torch.no_grad():
        ref = model(input_values=x["input_values"]).pooler_output.numpy()
    np.testing.assert_allclose(np.stack(df.embedding), ref, atol=1e-6)
    assert ref.shape == (N_RECORDS, model.config.hidden_size)
    # the CSV names the record as the Parquet output does: record_id
    csv_out = tmp_path / "emb.csv"
    assert cli_main(["embed", str(d), "--model", str(tiny_model), "--out", str(csv_out), "--workers", "0",
                     "--no-progress"]) == 0
    rows = pd.read_csv(csv_out)
    assert list(rows.columns[:2]) == ["record_id", "path"] and "record_id" in df.columns
    assert sorted(rows["record_id"]) == sorted(df["record_id"])
    np.testing.assert_allclose(rows[[f"e{j}" for j in range(ref.shape[1])]].to_numpy(),
                               np.stack(df.set_index("record_id").loc[rows["record_id"], "embedding"]), atol=1e-6)


def test_cli_rows_equal_the_profiling_pipeline(tiny_model, assets, tmp_path):
    """`profile` has one implementation: the CLI's rows are `profile_rows` of `pipeline("ecg-profiling")`."""
    from transformers import pipeline

    from anyecg_hf.prediction import profile_rows

    files = [assets / "data" / "cinc2021" / f"{n}.hea" for n in ("HR06000", "JS20004")]  # JS20004 has flat leads
    out = tmp_path / "p.json"
    assert cli_main(["profile", *map(str, files), "--model", str(tiny_model), "--out", str(out), "--top-k", "2",
                     "--workers", "0", "--no-progress"]) == 0
    rows = json.loads(out.read_text())
    pipe = pipeline("ecg-profiling", model=str(tiny_model))
    expected = [r for f in files for r in profile_rows(pipe(str(f), top_k=2))]
    assert any(r["warnings"] for r in expected)
    assert len(rows) == len(expected) == 4
    for got, exp in zip(rows, expected):
        assert got.pop("path") in map(str, files)
        assert got.pop("measurements") is None  # the archive adds the file's measurements; WFDB stores none
        assert got.pop("precision") == "fp32"  # the default, recorded in every row
        got = {"record": got.pop("record_id"), **got}  # files say record_id (as Parquet); profile_rows says record
        assert got.keys() == exp.keys()
        for k in exp:
            if isinstance(exp[k], float):
                assert got[k] == pytest.approx(exp[k], abs=1e-6)
            else:
                assert got[k] == exp[k], k


def test_profile_carries_the_carts_measurements(tiny_model, assets, tmp_path):
    """A CardioSoft file's RestingECGMeasurements reach every CSV row of its record and the Parquet column, as
    JSON; a WFDB record has none (empty cell / null)."""
    from anyecg_hf import read_ecg
    from anyecg_hf.io import write_cardiosoft_xml

    d = tmp_path / "in"
    d.mkdir()
    rec = read_ecg(assets / "data" / "cinc2021" / "HR06001.hea")
    measured = {"heart_rate": 54, "pr_ms": 168, "qrs_ms": 94, "qt_ms": 432, "qtc_ms": 409, "qrs_axis": -12}
    rec.metadata["measurements"] = measured
    write_cardiosoft_xml(rec, d / "ukb.xml")
    for ext in (".hea", ".mat"):
        shutil.copy(assets / "data" / "cinc2021" / f"E07503{ext}", d / f"E07503{ext}")
    out = tmp_path / "p.csv"
    assert cli_main(["profile", str(d), "--model", str(tiny_model), "--out", str(out), "--top-k", "2",
                     "--workers", "0", "--no-progress"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and list(rows[0])[-1] == "measurements"
    by_record = {}
    for row in rows:
        by_record.setdefault(row["record_id"], set()).add(row["measurements"])
    assert by_record["E07503"] == {""}
    assert len(by_record["ukb"]) == 1 and json.loads(by_record["ukb"].pop()) == measured
    assert cli_main(["profile", str(d), "--model", str(tiny_model), "--out", str(tmp_path / "pq"), "--workers", "0",
                     "--no-progress"]) == 0
    df = pd.read_parquet(tmp_path / "pq").set_index("record_id")
    assert json.loads(df.loc["ukb", "measurements"]) == measured and df.loc["E07503", "measurements"] is None


@pytest.mark.parametrize("head", ["discrete", "cox"])
def test_risk_model_rows_equal_the_profiling_pipeline(head, assets, tmp_path):
    """Models with a risk head: Parquet keeps risk scores and the (n_risk, n_horizons) incidences; the CSV rows
    (risk_1y, risk_5y, ...) are the pipeline's. A Cox head without a fitted baseline has no absolute risks."""
    from transformers import pipeline

    from anyecg_hf import AnyECGForHealthProfiling, LabelSpace
    from anyecg_hf.prediction import profile_rows

    torch.manual_seed(2)
    model = AnyECGForHealthProfiling(tiny_config(risk_label_space=LabelSpace.from_names(["death", "AF onset"]),
                                                 risk_head_type=head))
    model.save_pretrained(tmp_path / "m")
    files = [str(assets / "data" / "cinc2021" / f"{n}.hea") for n in ("HR06001", "E07503")]
    assert cli_main(["profile", *files, "--model", str(tmp_path / "m"), "--out", str(tmp_path / "pq"),
                     "--workers", "0", "--no-progress"]) == 0
    df = pd.read_parquet(tmp_path / "pq").sort_values("input_index")
    assert np.stack(df.risk_scores).shape == (2, 2)
    if head == "discrete":
        inc = np.stack([np.stack(v) for v in df.cumulative_incidence])
        assert inc.shape == (2, 2, 3) and np.all((inc >= 0) & (inc <= 1))
    else:
        assert "cumulative_incidence" not in df.columns
    assert cli_main(["profile", *files, "--model", str(tmp_path / "m"), "--out", str(tmp_path / "p.json"),
                     "--workers", "0", "--no-progress"]) == 0
    rows = json.loads((tmp_path / "p.json").read_text())
    pipe = pipeline("ecg-profiling", model=str(tmp_path / "m"))
    expected = [r for f in files for r in profile_rows(pipe(f))]
    assert len(rows) == len(expected) == 2 * (3 + 2)
    for got, exp in zip(rows, expected):
        got.pop("path")
        assert got.pop("measurements") is None
        assert got.pop("precision") == "fp32"
        got = {"record": got.pop("record_id"), **got}  # files say record_id (as Parquet); profile_rows says record
        assert got.keys() == {str(k) for k in exp}
        for k, v in exp.items():
            if isinstance(v, float):
                assert got[k] == pytest.approx(v, abs=1e-6), k
            else:
                assert got[k] == v, k


def test_precision_is_applied_and_recorded(tiny_model, sample_dir, tmp_path, monkeypatch, capsys):
    """`--precision bf16` runs under bf16 autocast (scores move, but by < 0.02 on this model) and every row and the
    manifest say so; the deprecated `--dtype` alias still works; fp16 on a CPU without it is a usage error."""
    from anyecg_hf.runtime import precision as P

    d, _ = sample_dir
    runs = {}
    for name, flag in (("fp32", []), ("bf16", ["--precision", "bf16"]), ("alias", ["--dtype", "bfloat16"])):
        out = tmp_path / name
        assert cli_main(["profile", str(d), "--model", str(tiny_model), "--out", str(out), "--workers", "0",
                         "--no-progress", *flag]) == 0
        df = pd.read_parquet(out).sort_values("path")
        runs[name] = (np.stack(df.probabilities), set(df.precision), json.loads((out / "_SUCCESS").read_text()))
    assert "--dtype is deprecated; use --precision bf16" in capsys.readouterr().err
    p32, p16, alias = runs["fp32"], runs["bf16"], runs["alias"]
    assert p32[1] == {"fp32"} and p16[1] == alias[1] == {"bf16"}
    assert p32[2]["precision"] == "fp32" and p16[2]["precision"] == "bf16"
    assert 0 < np.abs(p16[0] - p32[0]).max() < 0.02
    np.testing.assert_array_equal(p16[0], alias[0])

    csv_out = tmp_path / "p.csv"
    assert cli_main(["profile", str(d), "--model", str(tiny_model), "--out", str(csv_out), "--workers", "0",
                     "--no-progress", "--precision", "bf16"]) == 0
    with open(csv_out, newline="") as f:
        assert {r["precision"] for r in csv.DictReader(f)} == {"bf16"}

    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert cli_main(["profile", str(d), "--model", str(tiny_model), "--out", str(tmp_path / "f16"), "--workers", "0",
                     "--no-progress", "--precision", "fp16", "--device", "cpu"]) == 2
    assert "no native float16" in capsys.readouterr().err


def test_preprocessing_on_the_device_gives_the_same_rows(tiny_model, sample_dir, assets, tmp_path):
    """`--preprocess-on device` (what a GPU job does, here on CPU tensors): readers only read and select leads, the
    recipe runs as torch operations next to the model; the rows equal the CPU readers' rows (probabilities to
    1e-5, warnings and window counts exactly), including a long record cut into sliding windows and a record
    with flat leads and the unreadable inputs."""
    d = tmp_path / "ecgs"
    shutil.copytree(sample_dir[0], d)
    import wfdb
    from scipy import signal as sps

    src = assets / "data" / "cinc2021"
    for ext in (".hea", ".mat"):  # flat leads: quality warnings
        shutil.copy(src / f"JS20004{ext}", d / f"JS20004{ext}")
    a, fields = wfdb.rdsamp(str(src / "HR06000"))
    b, _ = wfdb.rdsamp(str(src / "JS20000"))
    long = sps.resample_poly(np.concatenate([a, b[:2500]]), 1, 2, axis=0)  # 15 s at 250 Hz: resampled, 2 windows
    wfdb.wrsamp("LONG250", fs=250, units=["mV"] * 12, sig_name=fields["sig_name"], p_signal=long,
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(d))
    frames = {}
    for where in ("cpu", "device"):
        out = tmp_path / where
        assert cli_main(["profile", str(d), "--model", str(tiny_model), "--out", str(out), "--workers", "0",
                         "--no-progress", "--preprocess-on", where, "--device", "cpu"]) == 0
        frames[where] = pd.read_parquet(out).sort_values("path").reset_index(drop=True)
    cpu, dev = frames["cpu"], frames["device"]
    assert cpu.path.tolist() == dev.path.tolist() and len(cpu) == N_RECORDS + 2
    assert cpu.n_windows.tolist() == dev.n_windows.tolist() and max(dev.n_windows) > 1
    assert [list(w) for w in cpu.warnings] == [list(w) for w in dev.warnings]
    assert any(len(w) for w in dev.warnings)
    np.testing.assert_allclose(np.stack(dev.probabilities), np.stack(cpu.probabilities), atol=1e-5)
