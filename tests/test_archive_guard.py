"""The archive job under careless use (issue 21): two jobs on one output folder (two real processes), `--resume`
after each kind of change, a symlinked input path, a non-UTF-8 file name, a full or read-only disk.

No timing: the concurrent job is paused (SIGSTOP) once it holds the lock, so the second job meets it for sure."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from anyecg_hf.cli import main as cli_main
from anyecg_hf.testing import copy_cinc_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 6


def _env():
    env = dict(os.environ)
    env.update(PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return env


def _cmd(*args):
    return [sys.executable, "-m", "anyecg_hf.cli", *map(str, args)]


def _cli(*args, timeout=300):
    return subprocess.run(_cmd(*args), capture_output=True, text=True, env=_env(), timeout=timeout)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return tiny_model_dir


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("ecgs") / "in"
    copy_cinc_records(d, N)
    return d


def _rows(out):
    from anyecg_hf.archive import store

    return store.read_results(str(out), columns=["path"]).column("path").to_pylist()


def _base(model, out):
    return ["--model", model, "--out", out, "--format", "parquet", "--no-progress", "--workers", "0"]


def _holder_pid(out):
    try:
        with open(out / "_lock") as f:
            return json.loads(f.read() or "{}").get("pid")
    except (FileNotFoundError, ValueError):
        return None


def test_second_job_refused_while_first_holds_the_folder(model, folder, tmp_path, capsys):
    out = tmp_path / "out"
    first = subprocess.Popen(_cmd("profile", folder, *_base(model, out), "--batch-size", "1"), env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240  # a hang guard, not a timing assertion
        while _holder_pid(out) != first.pid and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _holder_pid(out) == first.pid, "the first job never took the lock"
        os.kill(first.pid, signal.SIGSTOP)  # it holds the lock; keep it there while the second job tries
        live_tmp = out / f".part-r00000-c000099.parquet.tmp-{first.pid}"  # a live job's half-written chunk
        live_tmp.write_bytes(b"partial")
        second = _cli("profile", folder, *_base(model, out))  # a real second process: exit 2, never 134
        assert second.returncode == 2, (second.returncode, second.stderr[-1500:])
        assert f"pid {first.pid}" in second.stderr and "in use by another job" in second.stderr
        assert "Traceback" not in second.stderr
        capsys.readouterr()
        assert cli_main(["profile", str(folder), *map(str, _base(model, out)), "--resume"]) == 2
        assert f"pid {first.pid}" in capsys.readouterr().err
        assert live_tmp.exists()  # the refused jobs never cleaned the live job's temporary files
        live_tmp.unlink()
        os.kill(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-2000:]
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
            first.kill()
    paths = _rows(out)
    assert len(paths) == N and len(set(paths)) == N  # nothing lost, nothing duplicated


def test_killed_holder_releases_the_lock(model, folder, tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(_cmd("profile", folder, *_base(model, out), "--batch-size", "1", "--chunk-size", "1"),
                             env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while _holder_pid(out) != first.pid and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()  # SIGKILL: no cleanup code runs
    first.wait()
    assert cli_main(["profile", str(folder), *map(str, _base(model, out)), "--resume"]) == 0
    paths = _rows(out)
    assert len(paths) == N and len(set(paths)) == N


@pytest.fixture(scope="module")
def own_model(model, tmp_path_factory):
    """A copy of the model whose preprocessor_config.json a test edits in place between two runs."""
    path = tmp_path_factory.mktemp("own") / "tiny"
    shutil.copytree(model, path)
    return path


@pytest.fixture(scope="module")
def first_run(own_model, folder, tmp_path_factory):
    """A finished job on N - 2 of the inputs, to resume in different ways (each test copies it)."""
    out = tmp_path_factory.mktemp("first") / "out"
    assert cli_main(["profile", str(folder), *map(str, _base(own_model, out)), "--limit", str(N - 2)]) == 0
    return out


def _copy_run(first_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(first_run, out)
    return out


@pytest.mark.parametrize("change, named", [
    (["--aggregate", "max"], "--aggregate"),
    (["--threshold", "0.9"], "thresholds"),
    (["--units", "uV"], "read options"),
    (["--windowing", "first"], "--windowing"),
    (["--dtype", "bfloat16"], "precision"),
    (["--no-quality"], "--quality"),
    ("preprocessing", "bandpass_high 40.0 -> 20.0"),
    ("other_input", "input folders"),
])
def test_resume_refuses_any_change_that_shapes_rows(own_model, folder, first_run, tmp_path, capsys, change, named):
    out = _copy_run(first_run, tmp_path)
    before = sorted(os.listdir(out))
    inputs, args = [folder], [str(a) for a in _base(own_model, out)]
    config = own_model / "preprocessor_config.json"
    saved = config.read_text()
    if change == "preprocessing":  # edited in place: same folder, same weights, another band-pass
        edited = json.loads(saved)
        edited["bandpass_high"] = 20.0
        config.write_text(json.dumps(edited))
    elif change == "other_input":
        other = tmp_path / "other"
        shutil.copytree(folder, other)
        inputs = [other]
    else:
        args += change
    try:
        capsys.readouterr()
        rc = cli_main(["profile", *map(str, inputs), *args, "--resume"])
    finally:
        config.write_text(saved)
    err = capsys.readouterr().err
    assert rc == 2, err[-2000:]
    assert "--resume refused" in err and named in err, err[-1500:]
    assert sorted(os.listdir(out)) == before and len(_rows(out)) == N - 2  # nothing written, nothing removed
    if change == "preprocessing":  # the weights are the same: only the config is named
        assert "model revision" not in err and "model:" not in err


def test_resume_through_a_symlinked_input_path_adds_no_duplicate(own_model, folder, first_run, tmp_path):
    out = _copy_run(first_run, tmp_path)
    link = tmp_path / "link"
    os.symlink(folder, link)
    assert cli_main(["profile", str(link), *map(str, _base(own_model, out)), "--resume"]) == 0
    paths = _rows(out)
    assert len(paths) == N and len(set(paths)) == N
    assert all(p.startswith(str(folder)) for p in paths)  # recorded under the first run's spelling


def test_non_utf8_file_names_are_processed_and_recorded_escaped(model, assets, tmp_path):
    from anyecg_hf.io import read_ecg, write_npz

    src = tmp_path / "in"
    src.mkdir()
    rec = read_ecg(assets / "data" / "cinc2021" / "E07500.hea")
    raw = os.fsencode(str(src)) + b"/caf\xe9.npz"
    write_npz(rec, tmp_path / "tmp.npz")
    os.rename(tmp_path / "tmp.npz", raw)
    with open(os.fsencode(str(src)) + b"/bad\xff.npz", "wb") as f:  # unreadable: named in the errors table
        f.write(b"PK\x03\x04 not a zip")
    shutil.copy(assets / "data" / "cinc2021" / "E07501.hea", src / "E07501.hea")
    shutil.copy(assets / "data" / "cinc2021" / "E07501.mat", src / "E07501.mat")
    out = tmp_path / "out"
    assert cli_main(["profile", str(src), *map(str, _base(model, out))]) == 0
    paths = sorted(_rows(out))
    assert paths == sorted([str(src / "E07501.hea"), str(src) + "/caf\\xe9.npz"])
    from anyecg_hf.archive import store

    errors = store.read_errors(str(out)).to_pylist()
    assert [e["path"] for e in errors] == [str(src) + "/bad\\xff.npz"] and "bad\\xff.npz" in errors[0]["message"]
    assert cli_main(["profile", str(src), *map(str, _base(model, out)), "--resume"]) == 0
    assert sorted(_rows(out)) == paths and len(store.read_errors(str(out))) == 1  # done-set matches: no rerun


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_or_read_only_disk_is_one_line_and_exit_4(model, folder, tmp_path, monkeypatch, capsys, code):
    from anyecg_hf.archive import store

    real = store.atomic_write_table
    calls = {"n": 0}

    def failing(table, path, compression="zstd"):
        calls["n"] += 1
        if calls["n"] > 1:  # the plan is written; the first chunk of rows is not
            raise OSError(code, os.strerror(code), path)
        return real(table, path, compression)

    monkeypatch.setattr(store, "atomic_write_table", failing)
    out = tmp_path / "out"
    rc = cli_main(["profile", str(folder), *map(str, _base(model, out)), "--chunk-size", "2"])
    err = capsys.readouterr().err
    assert rc == 4, err[-2000:]
    assert os.strerror(code) in err and "Traceback" not in err
    monkeypatch.setattr(store, "atomic_write_table", real)
    assert cli_main(["profile", str(folder), *map(str, _base(model, out)), "--resume"]) == 0
    paths = _rows(out)
    assert len(paths) == N and len(set(paths)) == N


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_discovery_never_opens_fifos_nor_follows_links_out(model, assets, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for ext in (".hea", ".mat"):
        shutil.copy(assets / "data" / "cinc2021" / f"E07501{ext}", src / f"E07501{ext}")
    secret = tmp_path / "secret.csv"
    secret.write_text("time,I\n0,TOPSECRET\n")
    os.symlink(secret, src / "leak.csv")
    os.mkfifo(src / "pipe")  # extension-less: sniffing it would block discovery forever
    os.mkfifo(src / "pipe.xml")
    out = tmp_path / "out"
    assert cli_main(["profile", str(src), *map(str, _base(model, out))]) == 0
    from anyecg_hf.archive import store

    assert _rows(out) == [str(src / "E07501.hea")]
    errors = {os.path.basename(e["path"]): e for e in store.read_errors(str(out)).to_pylist()}
    assert set(errors) == {"leak.csv", "pipe", "pipe.xml"}  # never opened, each named in the errors table
    assert "outside the input folder" in errors["leak.csv"]["message"]
    assert "FIFO" in errors["pipe"]["message"] and "FIFO" in errors["pipe.xml"]["message"]
    assert "TOPSECRET" not in json.dumps(list(errors.values())) and str(secret) not in json.dumps(list(errors.values()))
    assert cli_main(["profile", str(src), *map(str, _base(model, out)), "--resume"]) == 0
    assert len(store.read_errors(str(out))) == 3  # reported once, not again on resume
