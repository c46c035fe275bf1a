"""Careless label tables and splits (issue 21): a split column that puts one patient in train and test, an event
at time 0, an event time of 1e9 years, a `path` outside the records folder. Each is an error that lists the
rows or patients, raised before anything is built."""

import shutil

import pandas as pd
import pytest

from anyecg_hf.data import LabelTableError, build_ecg_dataset, read_label_table
from anyecg_hf.data.builder import PatientLeakageError
from anyecg_hf.modeling import LabelSpace
from anyecg_hf.testing import copy_cinc_records

N = 10


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec") / "records"
    return d, copy_cinc_records(d, N)


def _table(names, **cols):
    frame = pd.DataFrame({"record_id": names, "codes": ["AF" if i % 2 else "SR" for i in range(len(names))]})
    for k, v in cols.items():
        frame[k] = v
    return frame


def test_split_column_leaking_patients_is_an_error_listing_them(records, tmp_path, capsys):
    folder, names = records
    # patients P0..P4 with two ECGs each; P1 and P3 have one ECG in train and one in test
    patients = [f"P{i // 2}" for i in range(N)]
    split = ["train", "train", "train", "test", "train", "train", "train", "test", "test", "test"]
    path = tmp_path / "labels.csv"
    _table(names, patient_id=patients, split=split).to_csv(path, index=False)
    with pytest.raises(PatientLeakageError) as err:
        build_ecg_dataset(folder, path, split="split", cache_dir=tmp_path / "cache")
    assert err.value.patients == {"P1": ["train", "test"], "P3": ["train", "test"]}
    assert "2 patient(s)" in str(err.value) and "P1 (train, test)" in str(err.value)
    # the same table with the leak fixed builds
    split[3], split[7] = "train", "train"
    _table(names, patient_id=patients, split=split).to_csv(path, index=False)
    dsd = build_ecg_dataset(folder, path, split="split", cache_dir=tmp_path / "cache")
    assert sorted(dsd) == ["test", "train"] and len(dsd["test"]) == 2
    # and through the CLI: exit code 2, nothing written
    from anyecg_hf.cli import main

    split[3] = "test"
    _table(names, patient_id=patients, split=split).to_csv(path, index=False)
    code = main(["build-dataset", "--records", str(folder), "--labels", str(path), "--split", "split",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and not (tmp_path / "o").exists()
    assert "P1 (train, test)" in capsys.readouterr().err


def test_event_at_time_zero_and_absurd_times_are_listed(records, tmp_path):
    folder, names = records
    times = [1.0, 0.0, 0.0, 1e9, 151.0, 150.0, 2.0, 3.0, 4.0, 5.0]
    events = [1, 1, 0, 0, 1, 0, 0, 1, 0, 1]
    path = tmp_path / "t.csv"
    _table(names, time_AF=times, event_AF=events).to_csv(path, index=False)
    with pytest.raises(LabelTableError) as err:
        read_label_table(path, risk_label_space=LabelSpace.from_names(["AF"]), records_dir=folder)
    kinds = sorted((p.kind, p.row) for p in err.value.problems)
    # row 2 (time 0, censored) and row 5 (exactly 150 years) are fine
    assert kinds == [("event at time 0", 1), ("implausible event time", 3), ("implausible event time", 4)]


def test_path_outside_the_records_folder_is_refused(records, tmp_path):
    folder, names = records
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(folder / f"{names[0]}.hea", outside / "x.hea")
    paths = [f"{n}.hea" for n in names]
    paths[2] = str(outside / "x.hea")  # absolute, exists, but not in the records folder
    paths[5] = "../elsewhere/x.hea"  # relative, leaves the folder
    path = tmp_path / "p.csv"
    _table(names, path=paths).to_csv(path, index=False)
    with pytest.raises(LabelTableError) as err:
        read_label_table(path, records_dir=folder)
    assert sorted((p.kind, p.row) for p in err.value.problems) == [
        ("path outside the records folder", 2), ("path outside the records folder", 5)]
    paths[2], paths[5] = str(folder / f"{names[2]}.hea"), f"{names[5]}.hea"  # absolute but inside: fine
    _table(names, path=paths).to_csv(path, index=False)
    assert len(read_label_table(path, records_dir=folder)) == N
