"""The end-of-run summary a job prints on rank 0."""

from __future__ import annotations

import os

from . import store
from .settings import JobResult, JobSettings


def print_summary(result: JobResult, settings: JobSettings, rendered, log) -> None:
    """The end-of-run summary: counts, speed, unreadable inputs, where the results are."""
    procs = f", {result.world_size} processes" if result.world_size > 1 else ""
    print(
        f"anyecg {settings.task}: {result.processed} ECGs processed, {result.skipped} skipped (done earlier), "
        f"{result.failed} failed in {result.seconds:.1f} s ({result.ecgs_per_s:.1f} ECGs/s{procs}, model busy "
        f"{result.model_busy:.0%} of the time)",
        file=log,
    )
    if result.errors_total:
        where = (rendered or {}).get("errors_path") or os.path.join(settings.parts_dir, store.ERRORS_DIR)
        print(f"{result.errors_total} input(s) could not be read (listed in {where}):", file=log)
        for e in result.errors:
            print(f"  {e['path']}: {e['error_class']}: {e['message']}", file=log)
        if result.errors_total > len(result.errors):
            print(f"  ... and {result.errors_total - len(result.errors)} more", file=log)
    if rendered is not None:
        what = "FHIR bundles" if settings.format == "fhir" else "rows"
        print(f"wrote {settings.out}: {rendered['rows']} {what} for {rendered['records']} records", file=log)
    else:
        print(f"wrote {settings.out}: {result.rows_total} rows in {len(result.manifest.get('files', []))} Parquet "
              f"file(s), manifest {os.path.join(settings.out, store.SUCCESS_FILE)}", file=log)
