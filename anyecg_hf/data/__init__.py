"""Datasets for fine-tuning: builders (folder + label table, PTB-XL, CinC 2020/2021), compact signal storage,
preprocessing with `map`, patient-level splits, Parquet shards / streaming, and the collator and samplers.

```python
from anyecg_hf.data import build_ecg_dataset, prepare_dataset, ECGDataCollator
ds = build_ecg_dataset("ecgs/", "labels.csv", split={"train": 0.8, "validation": 0.1, "test": 0.1})
ds = prepare_dataset(ds, AnyECGFeatureExtractor.from_pretrained(model_id), num_proc=8)
```

See `docs/data_and_recipes.md`.
"""

from .augment import ECGAugmentation
from .builder import BuildReport, build_ecg_dataset, find_record_files
from .cinc import (
    CINC2021_EQUIVALENT_CODES,
    CINC2021_SCORED,
    build_cinc,
    cinc2021_scored_label_space,
    cinc_label_table,
    snomed_label_space,
)
from .collator import ECGDataCollator
from .labels import LabelProblem, LabelTable, LabelTableError, read_label_table
from .metadata import dataset_metadata, decode_example, get_label_space, get_risk_label_space, set_dataset_metadata
from .prepare import is_prepared, prepare_dataset
from .ptbxl import build_ptbxl, ptbxl_label_space, ptbxl_label_table
from .sampler import EpochShuffleSampler, LabelBalancedSampler, label_balance_weights
from .saving import load_ecg_dataset, save_ecg_dataset
from .splits import check_patient_disjoint, patient_split, split_by_column
from .storage import decode_signal, encode_signal

__all__ = [
    "BuildReport",
    "CINC2021_EQUIVALENT_CODES",
    "CINC2021_SCORED",
    "ECGAugmentation",
    "ECGDataCollator",
    "EpochShuffleSampler",
    "LabelBalancedSampler",
    "LabelProblem",
    "LabelTable",
    "LabelTableError",
    "build_cinc",
    "build_ecg_dataset",
    "build_ptbxl",
    "check_patient_disjoint",
    "cinc2021_scored_label_space",
    "cinc_label_table",
    "dataset_metadata",
    "decode_example",
    "decode_signal",
    "encode_signal",
    "find_record_files",
    "get_label_space",
    "get_risk_label_space",
    "is_prepared",
    "label_balance_weights",
    "load_ecg_dataset",
    "patient_split",
    "prepare_dataset",
    "ptbxl_label_space",
    "ptbxl_label_table",
    "read_label_table",
    "save_ecg_dataset",
    "set_dataset_metadata",
    "snomed_label_space",
    "split_by_column",
]
