"""What a profile/embed job is asked to do (`JobSettings`), what it did (`JobResult`), and its errors."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass, field

TASKS = ("profile", "embed")
FORMATS = ("parquet", "csv", "json", "fhir")


class JobError(Exception):
    """A job that cannot run; `code` is the exit code the CLI returns; `quiet` is set on the ranks other than 0,
    which stop with the same error without printing it again."""

    code = 1
    quiet = False


class JobUsageError(JobError, ValueError):
    """Bad arguments, no inputs, an output folder that holds another run's results."""

    code = 2


class ModelLoadError(JobError, OSError):
    """The model (or the default model) cannot be loaded."""

    code = 3


class OutputWriteError(JobError):
    """The output cannot be written (disk full, read-only, no permission); what was written is kept."""

    code = 4


# errors of writing the output (a full disk, a read-only or foreign folder), as opposed to bugs
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG, errno.EIO})


def output_write_error(err: OSError, folder: str) -> OutputWriteError:
    """The one-line `OutputWriteError` for an `OSError` met while writing `folder`."""
    from .guard import escape_text

    what = err.strerror or str(err)
    return OutputWriteError(f"cannot write the output in {folder}: {what} ({escape_text(err.filename or '')}); "
                            "the rows written so far are kept: make room (or make it writable) and rerun with --resume")


@dataclass
class JobSettings:
    """Everything a profile/embed job needs. See `anyecg profile --help` for the user-facing meaning.

    Args:
        task (`str`): `"profile"` (diagnoses, risks; needs a model with a head) or `"embed"` (`pooler_output`).
        inputs (`Sequence[str]`): files and folders.
        out (`str`): output folder (`format="parquet"`, or `"fhir"`: one FHIR R4 bundle per record) or file (`"csv"`,
            `"json"`).
        format (`str`): `"parquet"`, `"csv"`, `"json"` or `"fhir"` (profiles only; `anyecg_hf.reporting.fhir`).
        manifest, manifest_root, manifest_column, extensions: see `discover_inputs`.
        model (`str`, *optional*): model folder / Hub id / ECGFounder `.pth`; `None` = the default model.
        revision (`str`, *optional*): Hub revision.
        device (`str`, *optional*): `"cpu"`, `"cuda"`, ...; default: Accelerate's choice per process.
        batch_size (`int`): records per batch (windows of long records are split into micro-batches of this size).
        workers (`int`, *optional*): DataLoader worker processes per rank (0 = read in the main process).
        chunk_size (`int`): rows per Parquet chunk (also the most work a kill can lose per rank).
        flush_seconds (`float`): a chunk is also written after this many seconds.
        resume (`bool`): skip inputs present in completed chunks of `out`.
        overwrite (`bool`): delete an earlier run's results in `out` first.
        retry_errors (`bool`): with `resume`, try the inputs of the errors table again.
        limit (`int`, *optional*): only the first `limit` inputs (dry run).
        aggregate (`str`): `"mean"` or `"max"` over a record's windows.
        windowing (`str`, *optional*): how records longer than the model's input are cut (`"sliding"`: windows over
            the whole record, as the pipelines do; `"first"`, `"center"`; `None`: the extractor's saved setting).
        top_k, threshold, horizons: CSV/JSON/FHIR rendering of profiles (`profile_records`); `threshold` also decides
            the `positive` column of Parquet rows.
        read_kwargs (`dict`): passed to `read_ecg` (`format`, `sampling_rate`, `lead_names`, `units`).
        quality (`bool`): signal-quality flags in the `warnings` column.
        precision (`str`): `"fp32"` (default), `"bf16"`, `"fp16"` or `"auto"`
            (`anyecg_hf.runtime.precision.resolve_precision`); recorded in the `precision` column and the manifest.
        preprocess_on (`str`): `"auto"` (default: on the model's device when it is a GPU, the readers then only read
            files), `"cpu"` (the readers preprocess) or `"device"` (`archive/device_preprocessing.py`).
        threads (`int`, *optional*): torch CPU threads per process.
        progress (`bool`): progress bar on rank 0.
        keep_parts (`bool`): keep the Parquet parts of a CSV/JSON output after rendering.
        follow_links (`bool`): read links in walked folders whose target is outside the folder (default: they are
            not read and are rows of the errors table).
        log (file-like): where rank 0 prints the summary (default `sys.stderr`).
    """

    task: str = "profile"
    inputs: Sequence[str] = ()
    out: str = "profile"
    format: str = "parquet"
    manifest: str | None = None
    manifest_root: str | None = None
    manifest_column: str | None = None
    extensions: str | None = None
    model: str | None = None
    revision: str | None = None
    device: str | None = None
    batch_size: int = 64
    workers: int | None = None
    chunk_size: int = 4096
    flush_seconds: float = 600.0
    resume: bool = False
    overwrite: bool = False
    retry_errors: bool = False
    limit: int | None = None
    aggregate: str = "mean"
    windowing: str | None = "sliding"
    top_k: int | None = None
    threshold: float | None = None
    horizons: Sequence[float] | None = None
    read_kwargs: dict = field(default_factory=dict)
    quality: bool = True
    precision: str = "fp32"
    preprocess_on: str = "auto"
    threads: int | None = None
    progress: bool = True
    keep_parts: bool = False
    follow_links: bool = False
    log: object = None

    @property
    def parts_dir(self) -> str:
        """Where the Parquet parts go: `out` itself, or `out + ".parts"` for a single-file output."""
        return self.out if self.format == "parquet" else self.out + ".parts"


@dataclass
class JobResult:
    """What a job did (identical on every rank).

    Attributes:
        processed (`int`): inputs that got a row in this run.
        failed (`int`): inputs that went to the errors table in this run.
        skipped (`int`): inputs skipped because an earlier run did them (`--resume`).
        inputs (`int`): inputs of the job.
        rows_total (`int`): result rows in the output (this and earlier runs).
        errors_total (`int`): error rows in the output (this and earlier runs).
        seconds (`float`): wall time of the streaming phase (slowest rank).
        model_busy (`float`): fraction of that time spent in the model's forward pass (near 1: the readers keep up;
            well below 1: reading/preprocessing is the bottleneck, more `workers` help if there are idle cores).
        world_size (`int`): processes.
        out (`str`): the output written.
        manifest (`dict`): the `_SUCCESS` content (rank 0; `{}` elsewhere).
        errors (`list[dict]`): the first error rows (rank 0), for the summary.
    """

    processed: int = 0
    failed: int = 0
    skipped: int = 0
    inputs: int = 0
    rows_total: int = 0
    errors_total: int = 0
    seconds: float = 0.0
    world_size: int = 1
    out: str = ""
    model_busy: float = 0.0
    manifest: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)

    @property
    def ecgs_per_s(self) -> float:
        done = self.processed + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0
