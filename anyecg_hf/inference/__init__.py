"""Archive-scale inference: the engine of `anyecg profile` and `anyecg embed`.

One implementation for a handful of files and for millions: input discovery (folders, manifests), deterministic
sharding across the processes of `accelerate launch`, DataLoader workers that read + preprocess while the model
runs, sharded Parquet written atomically, `--resume`, an errors table and a `_SUCCESS` manifest. See
`docs/archive.md`.

```python
from anyecg_hf.inference import JobSettings, run_job
result = run_job(JobSettings(task="profile", inputs=["ecgs/"], out="results/", model="path/to/model"))
```
"""

from .dataset import ECGFileDataset, StringTable, collate_items
from .discovery import discover_inputs, read_manifest, walk_directory
from .distributed import DistContext, init_distributed, shard
from .runner import JobError, JobResult, JobSettings, JobUsageError, ModelLoadError, run_job, window_outputs
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
    "window_outputs",
]
