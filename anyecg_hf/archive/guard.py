"""One job per output folder, and `--resume` only of the same job.

* `OutputLock`: an OS lock on `OUT/_lock`, taken before the job touches the folder and held for its whole life;
  the kernel releases it when the process ends, however it ends (kill -9 included), so a stale lock never blocks a
  later run. The file holds the holder's pid, host and start time, which a refused second job names. (Two jobs on
  one folder lost or duplicated rows and deleted each other's temporary files before.) It is a POSIX record lock
  (`fcntl.lockf`), not `flock`: a `flock` is shared with forked children, so a DataLoader reader still exiting
  after its job was killed kept the folder locked; a record lock belongs to the process alone. Record locks also
  reach NFS servers that run a lock manager. They are advisory: only our jobs honour them.
* `check_resume`: a job writes the settings that shape its rows to `OUT/_job.json` (model + revision,
  preprocessing config, windowing/aggregation, thresholds, read options such as units, precision, quality flags,
  and the real paths of its inputs); `--resume` with any of them changed is refused, naming what differs, because
  the output would silently hold rows made two ways. An input given through another path to the same real
  folder (a symlink) resumes under the first run's spelling, so the done-set matches and nothing is redone.
* `escape_text`: paths and messages as stored in Parquet. A file name may be any bytes the OS allows; Python
  holds undecodable bytes as surrogates (PEP 383), which Arrow cannot store. They are written as `\\xNN` escapes
  (`café` in Latin-1 -> `caf\\xe9`), the same text in the rows, the errors table and the resume done-set.
"""

from __future__ import annotations

import json
import os
import socket
import time

LOCK_FILE = "_lock"
JOB_FILE = "_job.json"

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock (documented)
    fcntl = None


def escape_text(text) -> str:
    """`text` with surrogate-escaped bytes written as `\\xNN` (idempotent; plain UTF-8 text is unchanged)."""
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone surrogates that are not escaped bytes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


class OutputBusyError(RuntimeError):
    """Another live job holds the output folder's lock."""


class OutputLock:
    """Exclusive lock on an output folder for the life of a job (see the module docstring)."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_FILE)
        self._fd = None

    def acquire(self) -> "OutputLock":
        """Take the lock or raise `OutputBusyError` naming the holder (never waits)."""
        if fcntl is None or self._fd is not None:
            return self
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputBusyError(
                f"{self.folder} is in use by another job ({holder}); wait for it to finish, or write to another "
                "--out") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "started_unix": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (the file stays: removing it would let a waiting opener lock a dead inode)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.lockf(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started')}"


# ------------------------------------------------------------------------------------------------- resume
def _real(path) -> str:
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def fingerprint(settings, meta: dict) -> dict:
    """What shapes a row of this job (JSON-serialisable): compared on `--resume`."""
    read = {k: v for k, v in sorted((settings.read_kwargs or {}).items())}
    precision = getattr(settings, "precision", None) or getattr(settings, "dtype", None)
    return {
        "task": settings.task,
        "model": meta.get("model"),
        "model_revision": meta.get("model_revision"),
        "preprocessing": meta.get("preprocessing"),
        "windowing": settings.windowing,
        "aggregate": settings.aggregate,
        "thresholds": meta.get("thresholds"),
        "read_options": json.loads(json.dumps(read, default=str)),
        "precision": precision,
        "quality_flags": bool(settings.quality),
        "extensions": settings.extensions,
        "inputs": [escape_text(os.path.abspath(p)) for p in settings.inputs],
        "inputs_real": [escape_text(_real(p)) for p in settings.inputs],
        "manifest": escape_text(_real(settings.manifest)) if settings.manifest else None,
        "manifest_root": escape_text(_real(settings.manifest_root)) if settings.manifest_root else None,
    }


_LABELS = {
    "model": "model", "model_revision": "model revision (weights)", "preprocessing": "preprocessing config",
    "windowing": "--windowing", "aggregate": "--aggregate", "thresholds": "thresholds (--threshold)",
    "read_options": "read options (--units, --input-format, --sampling-rate, --lead-names)",
    "precision": "precision", "quality_flags": "--quality/--no-quality", "extensions": "--extensions",
    "inputs_real": "input folders/files (real paths)", "manifest": "--manifest", "manifest_root": "--root",
    "task": "task",
}


def _short(value) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    for key, label in _LABELS.items():
        if key not in old:
            continue
        if old[key] != new.get(key):
            if key == "preprocessing" and isinstance(old[key], dict) and isinstance(new.get(key), dict):
                keys = sorted(k for k in set(old[key]) | set(new[key]) if old[key].get(k) != new[key].get(k))
                detail = ", ".join(f"{k} {_short(old[key].get(k))} -> {_short(new[key].get(k))}" for k in keys[:4])
                out.append(f"{label}: {detail}")
            else:
                out.append(f"{label}: {_short(old[key])} -> {_short(new.get(key))}")
    return out


def read_job_file(folder) -> dict | None:
    path = os.path.join(os.fspath(folder), JOB_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        raise ValueError(f"{path} is corrupt; move it away (or use --overwrite) and run again") from None


def check_resume(folder, new: dict) -> list | None:
    """Compare a resumed job's fingerprint with the one stored in `folder`.

    Returns:
        the input list to use (the first run's spelling when an input is the same real path spelled another
        way), or `None` when the inputs are used as given.

    Raises:
        ValueError: something that shapes the rows differs; the message lists each difference (old -> new).
    """
    old = read_job_file(folder)
    if old is None:
        return None
    diffs = _differences(old, new)
    if diffs:
        raise ValueError(f"--resume refused: {folder} holds rows made with other settings, which would mix with "
                         f"this run's: {'; '.join(diffs)}. Resume with the same command, or use --overwrite / "
                         "another --out")
    if old.get("inputs") != new.get("inputs"):
        return list(old["inputs"])
    return None


def write_job_file(folder, fp: dict, atomic_write_text) -> None:
    atomic_write_text(json.dumps(fp, indent=1, default=str) + "\n", os.path.join(os.fspath(folder), JOB_FILE))
