"""The archive-scale engine (`anyecg_hf.inference`): discovery, sharding, atomic shards, windows, and the two
end-to-end guarantees of issue 10 -- a two-process run gives the same rows as one process, and a job SIGKILLed
mid-way and resumed gives exactly one row per readable input."""

import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from anyecg_hf.archive import JobSettings, StringTable, discover_inputs, run_job, shard
from anyecg_hf.archive import store
from anyecg_hf.testing import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPIES = 4  # x 50 CinC records = 200 readable inputs
CORRUPT = ("c0/A_garbage.hea", "c1/truncated.xml", "c2/nodata.hea")


def _env():
    env = dict(os.environ)
    env.update(PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from anyecg_hf import AnyECGForDiagnosis

    torch.manual_seed(1)
    model = AnyECGForDiagnosis(tiny_config())
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
    path = tmp_path_factory.mktemp("model") / "tiny"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def archive(assets, tmp_path_factory):
    """COPIES folders of symlinks to the 50 CinC records, plus three inputs that cannot be read. The links lead to
    a hidden copy inside the archive folder (links leading outside a walked folder are not read by default)."""
    root = tmp_path_factory.mktemp("archive")
    src = root / ".src"
    shutil.copytree(assets / "data" / "cinc2021", src)
    for c in range(COPIES):
        d = root / f"c{c}"
        d.mkdir()
        for f in sorted(src.iterdir()):
            (d / f.name).symlink_to(f)
    (root / CORRUPT[0]).write_text("not a header\n")
    (root / CORRUPT[1]).write_text("<RestingECG><Waveform>")
    header = (src / "E07500.hea").read_text().replace("E07500", "nodata")
    (root / CORRUPT[2]).write_text(header)  # a valid header whose .mat is missing
    return root


@pytest.fixture(scope="module")
def reference(tiny_model, archive, tmp_path_factory):
    """One uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("ref") / "out"
    result = run_job(JobSettings(inputs=[str(archive)], out=str(out), model=str(tiny_model), workers=1,
                                 batch_size=32, quality=False, progress=False, log=open(os.devnull, "w")))
    assert result.processed == 50 * COPIES and result.failed == len(CORRUPT)
    return out


def test_cpu_defaults_share_two_cores_between_gated_readers_and_the_model(monkeypatch):
    """1 core per process: no reader; 2: one reader per core and the model on both cores, gated; more: ~1 reader
    per 4 cores on cores of their own (not gated)."""
    import torch

    from anyecg_hf.archive.cpu import default_threads, default_workers, readers_share_cores

    cpu = torch.device("cpu")
    for cores, world, workers, threads, gated in [(2, 1, 2, 2, True), (2, 2, 0, 1, False), (1, 1, 0, 1, False),
                                                  (4, 2, 2, 2, True), (8, 1, 2, 6, False), (16, 2, 2, 6, False)]:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert default_workers(cpu, world) == workers, (cores, world)
        assert default_threads(cpu, world, workers) == threads, (cores, world)
        assert readers_share_cores(cpu, world, workers, threads) is gated, (cores, world)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert readers_share_cores(cpu, 1, 1, 2) and not readers_share_cores(cpu, 1, 1, 1)  # a user's --workers/--threads
    assert not readers_share_cores(torch.device("cuda"), 1, 4, 2)  # never on GPU: its feeding must not pause


def test_preprocessing_threads_are_the_process_share_of_the_cores(monkeypatch):
    from anyecg_hf.archive.cpu import preprocessing_threads as _preprocessing_threads, worker_init as _worker_init

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    monkeypatch.delenv("ANYECG_NUM_THREADS", raising=False)
    _preprocessing_threads(2)
    assert os.environ["ANYECG_NUM_THREADS"] == "2"
    monkeypatch.setenv("ANYECG_NUM_THREADS", "3")  # the user's setting wins
    _preprocessing_threads(2)
    assert os.environ["ANYECG_NUM_THREADS"] == "3"
    _worker_init(0)  # a reader process preprocesses on one thread
    assert os.environ["ANYECG_NUM_THREADS"] == "1"


def test_reader_notes_the_process_that_gates_it(monkeypatch):
    """`_worker_init` records the reader's parent (the job's process), which a gated reader watches."""
    import types

    import torch.utils.data

    from anyecg_hf import AnyECGFeatureExtractor
    from anyecg_hf.archive import ECGFileDataset
    from anyecg_hf.archive.cpu import worker_init as _worker_init

    ds = ECGFileDataset(["a.hea"], AnyECGFeatureExtractor())
    assert ds.parent_pid is None
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: types.SimpleNamespace(dataset=ds))
    monkeypatch.setenv("ANYECG_NUM_THREADS", "2")
    _worker_init(0)
    assert ds.parent_pid == os.getppid()


def _rows(out):
    df = pd.read_parquet(out)
    return df.set_index("path").sort_index()


# --------------------------------------------------------------------------------------------- units
def test_discovery_dedupes_wfdb_and_reads_manifests(tmp_path, assets):
    src = assets / "data" / "cinc2021"
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / ".hidden").mkdir()
    for name in ("E07500", "E07501"):
        for ext in (".hea", ".mat"):
            (d / f"{name}{ext}").symlink_to(src / f"{name}{ext}")
    (d / "sub" / "x.xml").write_text("<RestingECG/>")
    (d / "sub" / "README.md").write_text("not an ECG")
    (d / ".hidden" / "y.xml").write_text("<RestingECG/>")
    (d / "orphan.dat").write_bytes(b"\0" * 10)
    expected = [str(d / "E07500.hea"), str(d / "E07501.hea"), str(d / "sub" / "x.xml")]
    # links leading outside the folder are not read unless asked (a folder of links to a dataset)
    skipped = []
    assert discover_inputs([d], skipped=skipped) == expected[2:]
    assert sorted(os.path.basename(p) for p, _, _ in skipped) == ["E07500.hea", "E07501.hea"]  # .mat: part of a record
    assert discover_inputs([d], follow_links=True) == expected
    # a .mat named explicitly is its record's .hea; the same input twice is kept once, in argument order
    assert discover_inputs([d / "E07501.mat", d, d / "E07500.hea"], follow_links=True) == [expected[1], expected[0],
                                                                                            expected[2]]
    assert discover_inputs([d], limit=2, follow_links=True) == expected[:2]
    assert discover_inputs([d], extensions=".xml") == expected[2:]
    # manifests: paths relative to the manifest's folder, WFDB record ids without extension, CSV or Parquet
    pd.DataFrame({"record_id": ["E07501", "sub/x.xml", "missing.hea"]}).to_csv(d / "m.csv", index=False)
    assert discover_inputs(manifest=d / "m.csv") == [expected[1], expected[2], str(d / "missing.hea")]
    pd.DataFrame({"path": [str(d / "E07500.mat")]}).to_parquet(tmp_path / "m.parquet")
    assert discover_inputs(manifest=tmp_path / "m.parquet") == [expected[0]]
    with pytest.raises(ValueError, match="no column"):
        discover_inputs(manifest=d / "m.csv", manifest_column="nope")


def test_shard_is_a_disjoint_balanced_cover():
    for n, world in [(0, 2), (1, 3), (10, 3), (1001, 8)]:
        parts = [list(shard(n, r, world)) for r in range(world)]
        flat = sorted(i for p in parts for i in p)
        assert flat == list(range(n))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError):
        shard(3, 2, 2)


def test_plan_slices_are_the_round_robin_shards(tmp_path):
    paths = [f"/x/{i}.hea" for i in range(23)]
    index = np.arange(100, 123)
    store.write_plan(str(tmp_path), index, paths, {"inputs": 23})
    seen = []
    for rank in range(3):
        idx, p, info = store.read_plan(str(tmp_path), rank, 3, batch_rows=7)  # several record batches
        assert list(idx) == [100 + i for i in shard(23, rank, 3)] and info == {"inputs": 23}
        assert [os.fsdecode(b) for b in p.to_pylist()] == [paths[i] for i in shard(23, rank, 3)]  # OS bytes
        seen += list(idx)
    assert sorted(seen) == list(index)


def test_ramp_up_batches_cover_every_position_once_in_order():
    """Small first batches per reader (a quarter, then half the batch size), then full ones; `len` agrees."""
    from anyecg_hf.archive.dataset import RampUpBatches

    assert [len(b) for b in RampUpBatches(1000, 64, 2)][:7] == [16, 16, 32, 32, 64, 64, 64]
    assert [len(b) for b in RampUpBatches(200, 64, 0)] == [64, 64, 64, 8]  # no readers: no ramp
    for n, size, readers in [(1000, 64, 2), (10, 64, 2), (0, 64, 2), (5, 1, 3), (100, 3, 2), (97, 8, 4)]:
        batches = list(RampUpBatches(n, size, readers))
        assert [i for b in batches for i in b] == list(range(n)), (n, size, readers)
        assert len(RampUpBatches(n, size, readers)) == len(batches), (n, size, readers)
        assert all(0 < len(b) <= size for b in batches)


def test_string_table_round_trip():
    strings = ["/a/b.hea", "", "/ü/ñ/ecg 1.xml", "x" * 1000]
    t = StringTable(strings)
    assert len(t) == 4 and list(t) == strings and t[2] == strings[2]
    arrow = pa.array(["skip"] + strings).slice(1)  # a sliced Arrow array: offsets start past 0
    assert list(StringTable(arrow)) == strings and len(StringTable(pa.array([], pa.string()))) == 0


def test_shard_writer_atomic_chunks_and_done_set(tmp_path):
    out = str(tmp_path)

    def rows(paths):
        return pa.table({"input_index": pa.array(range(len(paths)), pa.int64()), "path": paths})

    w = store.ShardWriter(out, rank=1, metadata={"task": "profile"}, chunk_size=3)
    w.add(rows(["a", "b"]), [])
    assert store.list_parts(out) == []  # below chunk_size: still in memory
    w.add(rows(["c"]), [{"input_index": 9, "path": "bad", "record_id": "bad", "error_class": "E", "message": "m"}])
    assert [os.path.basename(f) for f in store.list_parts(out)] == ["part-r00001-c000000.parquet"]
    assert len(store.list_error_parts(out)) == 1
    w.add(rows(["d"]), [])
    w.flush()
    # a restarted writer of the same rank continues the numbering instead of overwriting a completed chunk
    assert store.next_chunk(out, 1) == 2 and store.next_chunk(out, 0) == 0
    (tmp_path / ".part-r00001-c000002.parquet.tmp-123").write_bytes(b"partial")
    assert store.clean_temporaries(out) == 1 and not any(n.startswith(".") for n in os.listdir(out))
    done = store.scan_done(out)
    assert done["rows"] == 4 and done["errors"] == 1
    assert np.array_equal(done["hashes"], np.unique(store.path_hashes(["a", "b", "c", "d", "bad"])))
    meta = json.loads(pa.parquet.read_schema(store.list_parts(out)[0]).metadata[b"anyecg"])
    assert meta == {"task": "profile"}


# --------------------------------------------------------------------------------------------- end to end
def test_reference_run_has_each_input_once(reference, archive):
    df = _rows(reference)
    assert len(df) == 50 * COPIES and df.index.is_unique
    errors = store.read_errors(str(reference)).to_pandas()
    assert sorted(errors.path) == sorted(str(archive / c) for c in CORRUPT)
    assert set(errors.error_class) <= {"ECGReadError", "FileNotFoundError"}
    manifest = json.loads((reference / "_SUCCESS").read_text())
    assert manifest["rows"] == 50 * COPIES and manifest["errors"] == len(CORRUPT)
    assert manifest["inputs"] == 50 * COPIES + len(CORRUPT)
    # symlinked copies of one record give the same scores
    a = df.loc[str(archive / "c0" / "E07500.hea"), "probabilities"]
    b = df.loc[str(archive / "c3" / "E07500.hea"), "probabilities"]
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("launcher", ["accelerate launch", "--processes"])
def test_two_processes_give_the_same_rows(tiny_model, archive, reference, tmp_path, launcher):
    """Under `accelerate launch` (with a reader per process), or relaunched by `--processes 2` (CPU defaults)."""
    out = tmp_path / "out2"
    job = ["profile", str(archive), "--model", str(tiny_model), "--out", str(out), "--batch-size", "32",
           "--chunk-size", "40", "--no-quality", "--no-progress"]
    if launcher == "--processes":
        cmd = [sys.executable, "-m", "anyecg_hf.cli", *job, "--processes", "2"]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "anyecg_hf.cli", *job, "--workers", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 processes" in res.stderr
    parts = [os.path.basename(f) for f in store.list_parts(str(out))]
    assert any(p.startswith("part-r00000") for p in parts) and any(p.startswith("part-r00001") for p in parts)
    one, two = _rows(reference), _rows(out)
    assert two.index.is_unique and list(two.index) == list(one.index)
    np.testing.assert_allclose(np.stack(two.probabilities), np.stack(one.probabilities), atol=1e-5)
    assert (two.input_index == one.input_index).all()
    errors = store.read_errors(str(out)).to_pandas()
    assert sorted(errors.path) == sorted(str(archive / c) for c in CORRUPT)
    manifest = json.loads((out / "_SUCCESS").read_text())
    assert manifest["run"]["processes"] == 2 and manifest["rows"] == 50 * COPIES


def test_gated_readers_give_the_same_rows(tiny_model, archive, reference, tmp_path):
    """Two readers sharing the cores with two model threads (the 2-core default): the readers are gated, and the rows,
    their order and the errors are those of the reference run."""
    out = tmp_path / "gated"
    result = run_job(JobSettings(inputs=[str(archive)], out=str(out), model=str(tiny_model), workers=2, threads=2,
                                 batch_size=32, quality=False, progress=False, log=open(os.devnull, "w")))
    manifest = json.loads((out / "_SUCCESS").read_text())
    assert manifest["run"]["readers_gated"] is (len(os.sched_getaffinity(0)) <= 3)  # 2 + 2 > cores
    assert result.processed == 50 * COPIES and result.failed == len(CORRUPT)
    one, two = _rows(reference), _rows(out)
    assert list(two.index) == list(one.index) and (two.input_index == one.input_index).all()
    np.testing.assert_allclose(np.stack(two.probabilities), np.stack(one.probabilities), atol=1e-6)
    assert sorted(store.read_errors(str(out)).to_pandas().path) == sorted(str(archive / c) for c in CORRUPT)


def test_a_closed_gate_pauses_the_readers_between_groups(assets):
    """`ECGFileDataset(gate=...)` reads nothing while the gate is clear, resumes when it is set, and gives the
    items of an ungated read; a reader whose job has exited stops waiting (an error within seconds)."""
    import threading

    from anyecg_hf import AnyECGFeatureExtractor
    from anyecg_hf.archive import ECGFileDataset

    files = sorted(str(p) for p in (assets / "data" / "cinc2021").glob("*.hea"))[:10]
    fe = AnyECGFeatureExtractor()
    gate = threading.Event()
    gated = ECGFileDataset(files, fe, gate=gate)
    reads = []
    read = gated._read
    gated._read = lambda path: reads.append(path) or read(path)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("items", gated.__getitems__(list(range(10)))))
    worker.start()
    worker.join(0.3)
    assert worker.is_alive() and reads == []  # waits at the first group
    gate.set()
    worker.join(30)
    assert not worker.is_alive() and reads == files
    plain = ECGFileDataset(files, fe).__getitems__(list(range(10)))
    gate.clear()
    gated.parent_pid = os.getppid() + 1  # as if the job that started this reader had exited
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="exited"):
        gated.__getitems__([0])
    assert time.perf_counter() - t0 < 5
    for a, b in zip(result["items"], plain):
        assert (a.index, a.record_id, a.meta["warnings"]) == (b.index, b.record_id, b.meta["warnings"])
        np.testing.assert_array_equal(a.inputs["input_values"], b.inputs["input_values"])


def test_sigkill_then_resume_gives_exactly_one_row_per_input(tiny_model, archive, reference, tmp_path):
    """Kill (SIGKILL, job and readers) after its second chunk, with rows of the next chunk in memory; resume."""
    src, out = archive / "c0", tmp_path / "killed"  # one copy (50 records + a corrupt file) keeps this test short
    cmd = [sys.executable, "-m", "anyecg_hf.cli", "profile", str(src), "--model", str(tiny_model),
           "--out", str(out), "--workers", "1", "--batch-size", "4", "--chunk-size", "8", "--no-quality",
           "--no-progress", "--follow-links"]  # c0's links lead to the archive's hidden copy, outside c0
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(store.list_parts(str(out))) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the job ended before it could be killed"
    n_rows = len(pd.read_parquet(out))
    n_before = n_rows + len(store.read_errors(str(out)))
    assert 0 < n_rows < 50 and not (out / "_SUCCESS").exists()

    result = run_job(JobSettings(inputs=[str(src)], out=str(out), model=str(tiny_model), workers=1,
                                 batch_size=32, resume=True, quality=False, progress=False, follow_links=True,
                                 log=open(os.devnull, "w")))
    assert result.skipped == n_before
    assert result.processed + result.failed + result.skipped == 51
    one = _rows(reference)
    one = one[one.index.str.startswith(str(src) + os.sep)]
    resumed = _rows(out)
    assert resumed.index.is_unique and list(resumed.index) == list(one.index) and len(one) == 50
    np.testing.assert_allclose(np.stack(resumed.probabilities), np.stack(one.probabilities), atol=1e-5)
    assert list(store.read_errors(str(out)).to_pandas().path) == [str(archive / CORRUPT[0])]
    assert json.loads((out / "_SUCCESS").read_text())["rows"] == 50


# Runs after the end-to-end tests on purpose: it preprocesses in this process (numba threads started), after which
# readers start through a forkserver instead of fork (`worker_context`), which is slower to start.
def test_long_records_are_windowed_and_averaged(tiny_model, assets, tmp_path):
    """A 25 s record: sliding windows over the whole record (the pipelines' default, although the saved extractor
    says "first"), aggregated into one row by the mean (or max) of the per-window probabilities."""
    from anyecg_hf import AnyECGFeatureExtractor, AnyECGForDiagnosis, read_ecg
    from anyecg_hf.io import ECGRecord, write_npz

    model_dir = tiny_model
    fe = AnyECGFeatureExtractor.from_pretrained(model_dir)
    assert fe.windowing == "first"
    fe.windowing = "sliding"
    recs = [read_ecg(assets / "data" / "cinc2021" / f"{n}.hea") for n in ("E07500", "E07501", "E07502")]
    long = ECGRecord(signal=np.concatenate([r.signal for r in recs], axis=1)[:, :12500],
                     sampling_rate=500.0, lead_names=recs[0].lead_names)
    (tmp_path / "in").mkdir()
    write_npz(long, tmp_path / "in" / "long.npz")
    for how in ("mean", "max"):
        out = tmp_path / f"out-{how}"
        run_job(JobSettings(inputs=[str(tmp_path / "in")], out=str(out), model=str(model_dir), workers=0,
                            aggregate=how, quality=False, progress=False, log=open(os.devnull, "w")))
        row = pd.read_parquet(out).iloc[0]
        x = fe([read_ecg(tmp_path / "in" / "long.npz")], return_tensors="pt")
        assert x["input_values"].shape[0] == row.n_windows == 3  # 0-10 s, 10-20 s, 15-25 s
        with torch.no_grad():
            p = torch.sigmoid(AnyECGForDiagnosis.from_pretrained(model_dir)(input_values=x["input_values"]).logits).numpy()
        expected = p.mean(axis=0) if how == "mean" else p.max(axis=0)
        np.testing.assert_allclose(row.probabilities, expected, atol=1e-6)
        assert not np.allclose(p[0], p[1], atol=1e-3)  # the windows really differ
