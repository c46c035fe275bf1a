"""anyecg_hf.data: label tables and their validation, compact storage, builders (folder + table, CinC, PTB-XL),
patient-level splits, Parquet shards and streaming, preprocessing with map, collator, samplers, HF Trainer."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from anyecg_hf.data import (
    ECGAugmentation,
    ECGDataCollator,
    EpochShuffleSampler,
    LabelBalancedSampler,
    LabelTableError,
    build_ecg_dataset,
    build_ptbxl,
    check_patient_disjoint,
    cinc_label_table,
    decode_example,
    decode_signal,
    encode_signal,
    get_label_space,
    label_balance_weights,
    load_ecg_dataset,
    patient_split,
    prepare_dataset,
    read_label_table,
    save_ecg_dataset,
)
from anyecg_hf.modeling import LabelSpace

CINC = "data/cinc2021"


def _dx_table(folder: Path) -> pd.DataFrame:
    """The label table written straight from the headers' `# Dx:` lines (independent of cinc_label_table)."""
    rows = []
    for hea in sorted(folder.glob("*.hea")):
        dx = [ln.split(":", 1)[1].strip() for ln in hea.read_text().splitlines() if ln.startswith("# Dx:")][0]
        rows.append({"record_id": hea.stem, "codes": dx.replace(",", ";")})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def cinc_dir(assets):
    return assets / CINC


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("hf_cache")


@pytest.fixture(scope="module")
def built(cinc_dir, tmp_path_factory, cache):
    """The 50 CinC records built from the folder + a CSV label table of their # Dx codes."""
    table = _dx_table(cinc_dir)
    path = tmp_path_factory.mktemp("tables") / "labels.csv"
    table.to_csv(path, index=False)
    ds, report = build_ecg_dataset(cinc_dir, path, cache_dir=cache, return_report=True)
    return ds, report, table


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared: one thread is the fastest and the least noisy
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------------ storage
def test_int16_storage_is_exact_for_microvolt_data_and_bounded_otherwise(rng):
    counts = rng.integers(-3000, 3000, size=(12, 500))
    x = (counts * np.float32(0.001)).astype(np.float32)
    flat, gain = encode_signal(x, "int16")
    assert flat.dtype == np.int16 and np.all(gain == np.float32(0.001))
    assert np.array_equal(decode_signal(flat, gain), (flat.reshape(12, -1) * np.float32(0.001)))
    assert np.abs(decode_signal(flat, gain) - x).max() <= 1e-6

    y = rng.normal(0, 3, size=(3, 1000)).astype(np.float32)
    y[1, 10:20] = np.nan
    flat, gain = encode_signal(y, "int16")
    back = decode_signal(flat, gain)
    assert np.array_equal(np.isnan(back), np.isnan(y))  # NaN (missing samples) survive
    err = np.abs(np.nan_to_num(back) - np.nan_to_num(y)).max(axis=1)
    assert np.all(err <= gain / 2 + 1e-6)
    assert np.allclose(gain, np.nanmax(np.abs(y), axis=1) / 32767)
    # Arrow hands lists back as int64: decoding must still apply the gain
    assert np.array_equal(decode_signal(flat.astype(np.int64).tolist(), gain), back, equal_nan=True)

    h, g16 = encode_signal(y, "float16")
    assert h.dtype == np.float16 and np.all(g16 == 1)
    rel = np.nanmax(np.abs(decode_signal(h, g16) - y) / np.maximum(np.abs(y), 1e-3))
    assert rel <= 2.0**-11 + 1e-7
    f, g32 = encode_signal(y, "float32")
    assert np.array_equal(decode_signal(f, g32), y, equal_nan=True)
    with pytest.raises(ValueError, match="does not fit int16"):
        encode_signal(np.full((1, 10), 40.0, np.float32), "int16", gain=0.001)


# ------------------------------------------------------------------------------------------------ building
def test_build_from_folder_and_dx_table(built, cinc_dir):
    from anyecg_hf.io import read_ecg

    ds, report, table = built
    assert len(ds) == 50 and report.n_built == 50 and not report.skipped and not report.unlabeled
    space = get_label_space(ds)
    all_codes = sorted({c for cell in table["codes"] for c in cell.split(";")})
    assert sorted(space.ids) == all_codes  # label space inferred from the table
    by_id = dict(zip(table["record_id"], table["codes"]))
    labels = np.asarray(ds["labels"])
    for i, rid in enumerate(ds["record_id"]):
        expected = np.zeros(len(space))
        for code in by_id[rid].split(";"):
            expected[space.index(code)] = 1
        assert np.array_equal(labels[i], expected), rid
    assert np.asarray(ds["label_mask"]).all()
    # signals: int16 with the 1 uV gain is exact for these 1000/mV recordings
    for i in (0, 17, 49):
        row = ds[i]
        rec = read_ecg(row["source"])
        assert row["lead_names"] == rec.lead_names and row["sampling_rate"] == rec.sampling_rate
        assert np.abs(decode_example(row) - rec.signal).max() <= 1e-6
        assert row["age"] == rec.metadata["age"] and row["sex"] == rec.metadata["sex"]
    # the CinC builder reads the same codes from the headers itself
    auto = cinc_label_table(cinc_dir)
    assert dict(zip(auto["record_id"], auto["codes"].str.replace(",", ";"))) == by_id


def test_bad_label_table_lists_every_offending_row_before_reading(cinc_dir, tmp_path, monkeypatch):
    table = _dx_table(cinc_dir).head(8).copy()
    table["time_AF"] = [1.0, 2.0, -0.5, 3.0, "soon", 4.0, 5.0, 6.0]
    table["event_AF"] = [0, 1, 1, 0, 1, 0, 0, 1]
    table.loc[1, "record_id"] = "NOPE001"  # record that does not exist
    table.loc[4, "codes"] = "426783006;999999999"  # code not in the label space
    table.loc[6, "record_id"] = table.loc[5, "record_id"]  # duplicate id
    path = tmp_path / "bad.csv"
    table.to_csv(path, index=False)
    space = LabelSpace([{"id": c, "name": c, "code_system": "SNOMED-CT", "code": c}
                        for c in sorted({c for cell in _dx_table(cinc_dir)["codes"] for c in cell.split(";")})])

    def never(*a, **k):
        raise AssertionError("a record was read before the label table was validated")

    monkeypatch.setattr("anyecg_hf.io.read_ecg", never)
    with pytest.raises(LabelTableError) as info:
        build_ecg_dataset(cinc_dir, path, space, LabelSpace.from_names(["AF"]))
    err = info.value
    assert err.rows == [1, 2, 4, 6]
    kinds = {p.kind: p.row for p in err.problems}
    assert kinds == {"missing record": 1, "negative event time": 2, "event time not a number": 4,
                     "code not in the label space": 4, "duplicate record id": 6}
    msg = str(err)
    for text in ("NOPE001", "line 3", "-0.5", "999999999", "line 6", "'soon'", "already on row 6", "line 8"):
        assert text in msg, text

    # the same through the CLI: exit code 2 and the rows listed
    from anyecg_hf.cli import main

    code = main(["build-dataset", "--records", str(cinc_dir), "--labels", str(path), "--out", str(tmp_path / "o")])
    assert code == 2 and not (tmp_path / "o").exists()


def test_wide_layout_blank_is_unknown_and_invalid_values_are_listed(cinc_dir, tmp_path):
    ids = sorted(p.stem for p in cinc_dir.glob("*.hea"))[:4]
    frame = pd.DataFrame({"record_id": ids, "AF": ["1", "0", "", "1"], "SB": ["0", "", "1", "0"],
                          "age": ["50", "", "70", "80"], "patient_id": ["p1", "p1", "p2", "p3"]})
    t = read_label_table(frame, available_records=ids)
    assert t.label_space.ids == ["AF", "SB"]
    assert np.array_equal(t.label_mask, [[1, 1], [1, 0], [0, 1], [1, 1]])
    assert np.array_equal(t.labels, [[1, 0], [0, 0], [0, 1], [1, 0]])
    assert t.patient_ids == ["p1", "p1", "p2", "p3"]
    bad = frame.assign(AF=["1", "2", "", "yes"], XYZ=["0", "1", "0", "0"])
    with pytest.raises(LabelTableError) as info:
        read_label_table(bad, LabelSpace.from_names(["AF", "SB"]), available_records=ids)
    msgs = [p.message for p in info.value.problems]
    assert any("'2'" in m for m in msgs) and any("'XYZ'" in m for m in msgs) and len(msgs) == 2


def test_unreadable_records_are_skipped_with_a_report(cinc_dir, tmp_path, cache):
    folder = tmp_path / "recs"
    folder.mkdir()
    ids = sorted(p.stem for p in cinc_dir.glob("*.hea"))[:4]
    for rid in ids:
        for ext in (".hea", ".mat"):
            shutil.copy(cinc_dir / f"{rid}{ext}", folder / f"{rid}{ext}")
    (folder / f"{ids[1]}.mat").write_bytes((folder / f"{ids[1]}.mat").read_bytes()[:100])  # truncated data
    (folder / f"{ids[2]}.hea").write_text("this is not a header\n")
    pd.DataFrame({"record_id": ids, "codes": ["426783006"] * 4}).to_csv(tmp_path / "l.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds, report = build_ecg_dataset(folder, tmp_path / "l.csv", cache_dir=cache, return_report=True, num_proc=2)
    assert sorted(ds["record_id"]) == [ids[0], ids[3]]
    assert sorted(s["record_id"] for s in report.skipped) == [ids[1], ids[2]]
    assert all(s["reason"] for s in report.skipped)
    assert "skipped 2 unreadable" in report.summary()


# ------------------------------------------------------------------------------------------------ splits
def test_patient_split_keeps_each_patient_in_one_split(built):
    ds = built[0]
    patients = [f"P{i % 13}" for i in range(len(ds))]  # 13 patients with 3-4 ECGs each
    ds = ds.remove_columns("patient_id").add_column("patient_id", patients)
    parts = patient_split(ds, {"train": 0.6, "validation": 0.2, "test": 0.2}, seed=3)
    check_patient_disjoint(parts)
    assert sum(len(p) for p in parts.values()) == len(ds)
    assert sorted(r for p in parts.values() for r in p["record_id"]) == sorted(ds["record_id"])
    for name, frac in (("train", 0.6), ("validation", 0.2), ("test", 0.2)):
        assert abs(len(parts[name]) / len(ds) - frac) <= 4 / len(ds)  # within one patient
    assert patient_split(ds, {"a": 0.5, "b": 0.5}, seed=3)["a"]["record_id"] == patient_split(ds, {"a": 0.5, "b": 0.5}, seed=3)["a"]["record_id"]
    mixed = {"x": parts["train"], "y": parts["train"].select([0])}
    with pytest.raises(ValueError, match="more than one split"):
        check_patient_disjoint(mixed)


# ------------------------------------------------------------------------------------------------ PTB-XL
def _make_ptbxl(src: Path, root: Path) -> list[str]:
    """A PTB-XL-shaped folder from the 10 CinC records that are PTB-XL ECGs 6000-6009."""
    import wfdb
    from scipy.signal import decimate

    from anyecg_hf.io import read_ecg

    heas = sorted(src.glob("HR060*.hea"))
    rows = []
    codes = ["{'NORM': 100.0, 'SR': 0.0}", "{'IMI': 80.0, 'SR': 0.0}", "{'NDT': 100.0, 'STACH': 0.0}",
             "{'LVH': 50.0, 'SR': 0.0}", "{'AFIB': 100.0}"]
    for k, hea in enumerate(heas):
        rec = read_ecg(hea)
        ecg_id = 6001 + k
        sub = f"{ecg_id // 1000 * 1000:05d}"
        for rate, name, sig in ((500, f"{ecg_id:05d}_hr", rec.signal), (100, f"{ecg_id:05d}_lr", decimate(rec.signal, 5, axis=1))):
            folder = root / f"records{rate}" / sub
            folder.mkdir(parents=True, exist_ok=True)
            wfdb.wrsamp(name, fs=rate, units=["mV"] * 12, sig_name=rec.lead_names, p_signal=np.asarray(sig.T, np.float64),
                        fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder))
        rows.append({"ecg_id": ecg_id, "patient_id": float(100 + k // 2 if k < 8 else 200 + k), "age": 50.0 + k,
                     "sex": k % 2, "scp_codes": codes[k % len(codes)], "strat_fold": k + 1,
                     "filename_lr": f"records100/{sub}/{ecg_id:05d}_lr", "filename_hr": f"records500/{sub}/{ecg_id:05d}_hr"})
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    pd.DataFrame([
        ("NORM", "normal ECG", 1, None, None, "NORM", "NORM"), ("IMI", "inferior myocardial infarction", 1, None, None, "MI", "IMI"),
        ("NDT", "non-diagnostic T abnormalities", 1, None, None, "STTC", "STTC"), ("LVH", "left ventricular hypertrophy", 1, None, None, "HYP", "LVH"),
        ("SR", "sinus rhythm", None, None, 1, None, None), ("AFIB", "atrial fibrillation", None, None, 1, None, None),
        ("STACH", "sinus tachycardia", None, None, 1, None, None),
    ], columns=["", "description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"]).to_csv(
        root / "scp_statements.csv", index=False)
    return [str(6001 + k) for k in range(len(heas))]


def test_ptbxl_builder_official_folds_statements_and_rates(cinc_dir, tmp_path, cache):
    ids = _make_ptbxl(cinc_dir, tmp_path / "ptbxl")
    dsd = build_ptbxl(tmp_path / "ptbxl", cache_dir=cache)
    assert {k: len(v) for k, v in dsd.items()} == {"train": 8, "validation": 1, "test": 1}
    assert dsd["validation"]["record_id"] == [ids[8]] and dsd["test"]["record_id"] == [ids[9]]
    space = get_label_space(dsd["train"])
    assert space.ids == ["NORM", "IMI", "NDT", "LVH", "SR", "AFIB", "STACH"]
    first = dsd["train"][0]
    assert [space[j].id for j, v in enumerate(first["labels"]) if v] == ["NORM", "SR"]
    assert first["sampling_rate"] == 500 and first["num_samples"] == 5000 and first["sex"] == "M"
    assert first["patient_id"] == "100"
    # superclass aggregation, 100 Hz records
    sup = build_ptbxl(tmp_path / "ptbxl", sampling_rate=100, level="superclass", cache_dir=cache)
    space = get_label_space(sup["train"])
    assert space.ids == ["NORM", "MI", "STTC", "HYP"]
    assert sup["train"][0]["sampling_rate"] == 100 and sup["train"][0]["num_samples"] == 1000
    labels = {r["record_id"]: [space[j].id for j, v in enumerate(r["labels"]) if v] for r in sup["train"]}
    assert labels[ids[1]] == ["MI"] and labels[ids[4]] == []  # AFIB is a rhythm, no diagnostic superclass
    # an SCP code missing from scp_statements.csv is listed
    db = pd.read_csv(tmp_path / "ptbxl" / "ptbxl_database.csv")
    db.loc[3, "scp_codes"] = "{'FOO': 100.0}"
    db.to_csv(tmp_path / "ptbxl" / "ptbxl_database.csv", index=False)
    with pytest.raises(LabelTableError, match="FOO"):
        build_ptbxl(tmp_path / "ptbxl", cache_dir=cache)


# ------------------------------------------------------------------------------------------------ storage on disk
def test_parquet_shards_stream_the_same_rows(built, tmp_path):
    ds = built[0].select(range(12))
    save_ecg_dataset(ds, tmp_path / "pq", format="parquet", num_shards=3)
    shards = sorted((tmp_path / "pq" / "data").glob("*.parquet"))
    assert [s.name for s in shards] == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    stream = load_ecg_dataset(tmp_path / "pq", split="train", streaming=True)
    assert get_label_space(stream) == get_label_space(ds)
    rows = list(stream)
    assert [r["record_id"] for r in rows] == ds["record_id"]
    for r, ref in zip(rows, ds):
        assert np.array_equal(decode_example(r), decode_example(ref)) and r["labels"] == ref["labels"]
    save_ecg_dataset(ds, tmp_path / "arrow")
    back = load_ecg_dataset(tmp_path / "arrow")
    assert back["record_id"] == ds["record_id"] and get_label_space(back) == get_label_space(ds)


def test_prepare_dataset_matches_the_feature_extractor_and_caches(built):
    from anyecg_hf.processing import AnyECGFeatureExtractor
    from anyecg_hf.testing import tiny_config

    ds = built[0].select(range(6))
    fe = AnyECGFeatureExtractor.from_model_config(tiny_config(sampling_rate=125, num_samples=500), backend="scipy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = prepare_dataset(ds, fe, windowing="sliding", storage="float32")
        again = prepare_dataset(ds, fe, windowing="sliding", storage="float32")
        direct = AnyECGFeatureExtractor.from_model_config(tiny_config(sampling_rate=125, num_samples=500), backend="scipy",
                                                          windowing="sliding")(
            decode_example(ds[2]), sampling_rate=500, lead_names=ds[2]["lead_names"], return_tensors="np")
    assert again.cache_files == prep.cache_files  # second call loaded from the datasets cache
    row = prep[2]
    assert row["num_windows"] == 3 and row["window_valid"] == [500, 500, 500]  # 10 s at 125 Hz -> 3 windows of 4 s
    assert np.array_equal(np.asarray(row["input_values"], np.float32).reshape(3, 12, 500), direct["input_values"])
    assert "signal" not in prep.column_names and get_label_space(prep) == get_label_space(ds)


# ------------------------------------------------------------------------------------------------ collator / sampler
def _rows(n_windows=2, leads=3, t=40, n=4):
    rng = np.random.default_rng(1)
    return [{"record_id": f"r{i}", "input_values": rng.normal(size=n_windows * leads * t).astype(np.float16),
             "lead_mask": [True, True, i != 1], "num_windows": n_windows, "window_valid": [t, t - 10 * (i == 2)],
             "labels": [1.0, 0.0], "label_mask": [True, i != 0],
             "event_times": [np.nan if i == 3 else 2.5], "events": [1.0], "at_risk_mask": [i != 3]} for i in range(n)]


def test_collator_windows_masks_and_targets():
    rows = _rows()
    col = ECGDataCollator(num_samples=30, num_leads=3, sampling_rate=10, train=False)
    b = col(rows)
    x0 = np.asarray(rows[0]["input_values"], np.float32).reshape(2, 3, 40)
    assert torch.equal(b["input_values"][0], torch.from_numpy(x0[0, :, :30]))  # first window, first 30 samples
    assert b["sample_mask"].all()
    assert b["lead_mask"].tolist()[1] == [True, True, False]
    assert b["label_mask"].tolist() == [[True, False], [True, True], [True, True], [True, True]]
    assert b["event_times"][3, 0] == 0 and not b["at_risk_mask"][3, 0]  # masked NaN -> 0, never reaches a loss
    assert set(b) == {"input_values", "lead_mask", "sample_mask", "labels", "label_mask", "event_times", "events", "at_risk_mask"}
    # short record is zero-padded with sample_mask; window="all" expands windows and maps them back
    long = ECGDataCollator(num_samples=50, num_leads=3, window="all", train=False)(rows)
    assert long["input_values"].shape == (8, 3, 50) and long["window_to_record"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert long["sample_mask"][5].sum() == 30 and long["input_values"][5, :, 30:].abs().sum() == 0
    assert long["labels"].shape == (8, 2)


def test_augmentations_are_off_by_default_and_seeded_by_record_and_epoch():
    rows = _rows()
    plain = ECGDataCollator(30, 3, 10, train=True)(rows)
    assert torch.equal(plain["input_values"], ECGDataCollator(30, 3, 10, train=False)(rows)["input_values"])
    aug = ECGAugmentation(random_crop=True, lead_dropout=0.5, amplitude_scale=(0.5, 1.5), baseline_wander=0.2,
                          gaussian_noise=0.1, seed=7)
    col = ECGDataCollator(30, 3, 10, augmentation=aug, train=True)
    a, b = col(rows), col(list(reversed(rows)))
    assert torch.equal(a["input_values"], b["input_values"].flip(0))  # depends on the record, not the batch position
    col.set_epoch(1)
    c = col(rows)
    assert not torch.equal(a["input_values"], c["input_values"])
    for batch in (a, c):  # dropped/missing leads are exactly zero and masked, at least one lead kept
        for i in range(4):
            m = batch["lead_mask"][i]
            assert m.any() and batch["input_values"][i][~m].abs().sum() == 0
    assert ECGAugmentation.from_dict(aug.to_dict()) == aug
    with pytest.raises(ValueError, match="Unknown augmentation"):
        ECGAugmentation.from_dict({"gausian_noise": 0.1})


def test_samplers_are_deterministic_per_epoch_and_balance_rare_labels():
    s = EpochShuffleSampler(20, seed=3)
    e0 = list(s)
    assert sorted(e0) == list(range(20)) and list(s) == e0
    s.set_epoch(1)
    assert list(s) != e0 and sorted(s) == list(range(20))
    y = np.array([[1, 0], [1, 0], [1, 0], [1, 1], [0, 0], [0, 1]], float)
    m = np.ones_like(y, bool)
    m[5, 1] = False  # the only other AF-positive is unknown: it must not count
    w = label_balance_weights(y, m, power=1.0)
    assert np.allclose(w, [1 / 4, 1 / 4, 1 / 4, 1, 1 / 4, 1 / 4])
    draws = np.bincount(list(LabelBalancedSampler(y, m, num_samples=20000, power=1.0, seed=0)), minlength=6) / 20000
    assert np.allclose(draws, w / w.sum(), atol=0.015)


def test_hf_trainer_runs_with_the_collator_and_label_mask(built, tmp_path):
    """Models work with the HF Trainer: the loss comes from the model and label_mask reaches it."""
    from transformers import Trainer, TrainingArguments

    from anyecg_hf.modeling import AnyECGForDiagnosis
    from anyecg_hf.testing import tiny_config

    ds = built[0].select(range(8))
    space = get_label_space(ds)
    rng = np.random.default_rng(0)
    rows = [{"input_values": rng.normal(size=12 * 256).astype(np.float32), "lead_mask": [True] * 12,
             "labels": r["labels"], "label_mask": [False] * len(space)} for r in ds]
    from datasets import Dataset

    train = Dataset.from_list(rows)
    model = AnyECGForDiagnosis(tiny_config(num_samples=256, label_space=space))
    collator = ECGDataCollator(num_samples=256, num_leads=12)
    batch = collator([train[i] for i in range(4)])
    assert model(**batch).loss.item() == 0.0  # every label unknown -> nothing to learn from
    args = TrainingArguments(output_dir=str(tmp_path / "t"), per_device_train_batch_size=4, max_steps=2, report_to=[],
                             remove_unused_columns=False, use_cpu=True, save_strategy="no", logging_steps=1)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
    before = [p.detach().clone() for p in model.parameters()]
    out = trainer.train()
    assert out.training_loss == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # zero loss, zero gradient (AdamW wd aside)


def test_streaming_build_reads_lazily_and_feeds_the_collator(built, cinc_dir, tmp_path):
    """streaming=True: an IterableDataset that reads files while iterating (corpora larger than the disk); the
    collator preprocesses raw rows on the fly."""
    from torch.utils.data import DataLoader

    from anyecg_hf.processing import AnyECGFeatureExtractor
    from anyecg_hf.testing import tiny_config

    ds, _, table = built
    path = tmp_path / "l.csv"
    table.head(6).to_csv(path, index=False)
    stream = build_ecg_dataset(cinc_dir, path, streaming=True)
    assert type(stream).__name__ == "IterableDataset" and get_label_space(stream).ids == read_label_table(path).label_space.ids
    rows = list(stream)
    ref = {r["record_id"]: r for r in ds}
    assert [r["record_id"] for r in rows] == table["record_id"].head(6).tolist()
    for r in rows:
        assert np.array_equal(decode_example(r), decode_example(ref[r["record_id"]]))
    fe = AnyECGFeatureExtractor.from_model_config(tiny_config(sampling_rate=125, num_samples=500), backend="scipy")
    collator = ECGDataCollator(500, 12, 125, feature_extractor=fe, train=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(DataLoader(stream.with_format("numpy"), batch_size=4, collate_fn=collator))
        direct = fe(decode_example(rows[5]), sampling_rate=500, lead_names=rows[5]["lead_names"], return_tensors="pt")
    assert [b["input_values"].shape[0] for b in batches] == [4, 2]
    assert torch.equal(batches[1]["input_values"][1], direct["input_values"][0])
    assert batches[0]["labels"].shape == (4, len(get_label_space(stream)))


def test_build_dataset_cli_cinc_layout(cinc_dir, tmp_path):
    import json

    from anyecg_hf.cli import main

    out = tmp_path / "cohort"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["build-dataset", "--records", str(cinc_dir), "--layout", "cinc", "--label-space", "scored",
                     "--out", str(out), "--split", "train=0.8,test=0.2", "--format", "parquet",
                     "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    report = json.loads((out / "build_report.json").read_text())
    assert report["n_built"] == 50 and report["skipped"] == [] and report["ignored_codes"]  # unscored codes ignored
    dsd = load_ecg_dataset(out)
    assert sorted(dsd) == ["test", "train"] and len(dsd["train"]) + len(dsd["test"]) == 50
    space = get_label_space(dsd["train"])
    assert space.name == "cinc2021-scored" and len(space) == 26
    table = cinc_label_table(cinc_dir, merge_equivalent=True)
    codes = dict(zip(table["record_id"], table["codes"]))
    for row in dsd["test"]:
        scored = sorted(c for c in codes[row["record_id"]].split(",") if c in {x.code for x in space})
        assert sorted(space[j].code for j, v in enumerate(row["labels"]) if v) == scored
    check_patient_disjoint(dsd)

