"""The archive job engine behind `anyecg profile` and `anyecg embed`.

One implementation for a handful of files and for millions: input discovery (folders, manifests), deterministic
sharding across the processes of `accelerate launch`, DataLoader workers that read + preprocess while the model
runs, sharded Parquet written atomically, `--resume`, an errors table and a `_SUCCESS` manifest. Modules by
concept: `settings` (what a job is asked), `model` (loading, identity), `planning` (output folder, resume, plan),
`discovery`, `distributed`, `dataset` (readers), `cpu` (workers/threads policy), `memory` (glibc heap policy),
`loop` (one rank's stream), `rows` (Arrow rows), `store` (Parquet shards), `render` (CSV/JSON), `summary`,
`runner` (the job from start to end). See `docs/archive.md`.

```python
from anyecg_hf.archive import JobSettings, run_job
result = run_job(JobSettings(task="profile", inputs=["ecgs/"], out="results/", model="path/to/model"))
```
"""

from .dataset import ECGFileDataset, StringTable, collate_items
from .discovery import discover_inputs, read_manifest, walk_directory
from .distributed import DistContext, init_distributed, shard
from .runner import run_job
from .settings import JobError, JobResult, JobSettings, JobUsageError, ModelLoadError
from .store import read_errors, read_results

__all__ = [
    "DistContext",
    "ECGFileDataset",
    "JobError",
    "JobResult",
    "JobSettings",
    "JobUsageError",
    "ModelLoadError",
    "StringTable",
    "collate_items",
    "discover_inputs",
    "init_distributed",
    "read_errors",
    "read_manifest",
    "read_results",
    "run_job",
    "shard",
    "walk_directory",
]
