"""Readers for clinical ECG formats, all returning one record type.

```python
from anyecg_hf.io import read_ecg
rec = read_ecg("ecg.xml")          # GE MUSE, GE CardioSoft, Philips, HL7 aECG, DICOM, SCP-ECG, EDF, WFDB, CSV, NumPy
rec.signal, rec.sampling_rate, rec.lead_names, rec.metadata
```

See `docs/io.md` for the formats, the parsers behind them and the decisions taken.
"""

from .cardiosoft import write_cardiosoft_xml
from .detect import FORMATS, detect_format
from .edf import write_edf
from .folders import is_ecg_file, walk_ecg_files
from .muse import write_muse_xml
from .reader import ECGDirectoryReader, read_ecg, read_ecg_dir
from .record import ECGReadError, ECGRecord
from .scp import write_scp
from .tabular import write_csv, write_npz

__all__ = [
    "ECGRecord",
    "ECGReadError",
    "ECGDirectoryReader",
    "FORMATS",
    "detect_format",
    "is_ecg_file",
    "read_ecg",
    "read_ecg_dir",
    "walk_ecg_files",
    "write_cardiosoft_xml",
    "write_csv",
    "write_edf",
    "write_muse_xml",
    "write_npz",
    "write_scp",
]
