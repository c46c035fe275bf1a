"""`read_ecg` (one file, any format) and `read_ecg_dir` (a folder, lazily, errors collected)."""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import warnings
from pathlib import Path

import numpy as np

from .detect import FORMATS, detect_format, wfdb_header_for
from .folders import walk_ecg_files
from .record import ECGReadError, ECGRecord, check_regular, finalize

# format -> (module, reader function)
_READERS = {
    "wfdb": ("wfdb_reader", "read_wfdb"),
    "muse": ("muse", "read_muse"),
    "cardiosoft": ("cardiosoft", "read_cardiosoft"),
    "philips": ("philips", "read_philips"),
    "hl7": ("hl7_aecg", "read_hl7_aecg"),
    "dicom": ("dicom", "read_dicom"),
    "scp": ("scp", "read_scp"),
    "edf": ("edf", "read_edf"),
    "csv": ("tabular", "read_csv"),
    "npy": ("tabular", "read_npy"),
    "npz": ("tabular", "read_npz"),
}
_ALIASES = {
    "ge": "muse", "ge_muse": "muse", "muse_xml": "muse", "sierra": "philips", "philips_xml": "philips",
    "hl7_aecg": "hl7", "aecg": "hl7", "dcm": "dicom", "scp_ecg": "scp", "scp-ecg": "scp", "edf+": "edf",
    "bdf": "edf", "tsv": "csv", "numpy": "npy", "ge_cardiosoft": "cardiosoft", "cardiologyxml": "cardiosoft",
}


@functools.lru_cache(maxsize=None)
def _reader(fmt: str):
    """`(reader function, its parameters)` of a format (cached: `inspect.signature` on every read was ~4 % of a
    WFDB read)."""
    module, name = _READERS[fmt]
    reader = getattr(importlib.import_module(f"{__package__}.{module}"), name)
    return reader, inspect.signature(reader).parameters


def normalize_format(format: str) -> str:
    key = str(format).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        raise ValueError(f"Unknown ECG format {format!r}; expected one of {', '.join(FORMATS)}")
    return key


def read_ecg(path, format: str | None = None, *, sampling_rate: float | None = None, lead_names=None,
             units: str | None = None, **kwargs) -> ECGRecord:
    """Read one ECG file of any supported format into an `ECGRecord` (signal in mV, float32, canonical leads).

    Args:
        path (`str` or `os.PathLike`): the file. For WFDB, the `.hea`, the `.mat`/`.dat` or the record path
            without extension.
        format (`str`, *optional*): one of `"wfdb"`, `"muse"`, `"cardiosoft"`, `"philips"`, `"hl7"`, `"dicom"`,
            `"scp"`, `"edf"`, `"csv"`, `"npy"`, `"npz"`. Detected from the content, then the extension, when not
            given.
        sampling_rate (`float`, *optional*): the rate, for files that do not state it (CSV without a time column,
            `.npy`). For files that do, it must agree with the file (a mismatch is an `ECGReadError`).
        lead_names (`list[str]`, *optional*): lead names, for formats whose channels have free-text labels or none
            (`wfdb`, `edf`, `csv`, `npy`, `npz`); replaces the file's labels, in file order.
        units (`str`, *optional*): unit of values the file leaves unitless (`"mV"`, `"uV"`, `"V"`; CSV/NumPy
            default to mV). Units stated in a file always win.
        **kwargs: format options, e.g. `waveform="median"` (MUSE, CardioSoft, Philips, DICOM, SCP),
            `keep_calibration=True` (Philips), `check_crc=False` (SCP), `allow_truncated=True` (EDF),
            `derive_leads=False` (MUSE, CardioSoft), `subtract_baseline=False` (MUSE), and the size limits
            `max_bytes` (file size) and `max_samples` (leads x samples) every reader accepts.

    Returns:
        `ECGRecord`: leads in the standard order (I, II, III, aVR, aVL, aVF, V1-V6, then extra leads),
        `metadata["format"]` set, `source` = the file read.

    Raises:
        ECGReadError: the file is not a readable ECG of that format (wrong format, truncated, corrupt, missing
            `.dat`, non-numeric CSV, over a size limit, ...). The message names the file and the problem.
        FileNotFoundError: nothing exists at `path`.
        ImportError: the format needs an optional parser (`pip install -e ".[formats]"` in the anyecg_hf clone).
        TypeError: an option the chosen reader does not take.
        ValueError: an unknown `format` name or `waveform` value.
    """
    path = Path(os.fspath(path))
    try:
        fmt = normalize_format(format) if format is not None else detect_format(path)
    except (FileNotFoundError, ECGReadError):
        raise
    except OSError as err:  # no permission, I/O error: the file cannot be read, say which and why
        raise ECGReadError(path, f"cannot open the file ({err.strerror or err})") from None
    if not path.exists() and not (fmt == "wfdb" and wfdb_header_for(path) is not None):
        raise FileNotFoundError(f"No such file: {path}")
    if path.exists() and not path.is_dir():
        check_regular(path, fmt)  # never open a FIFO/device (detection above checks too, when it runs)
    reader, params = _reader(fmt)
    options = dict(kwargs)
    for name, value in (("sampling_rate", sampling_rate), ("lead_names", lead_names), ("units", units)):
        if value is None:
            continue
        if name in params:
            options[name] = value
        elif name != "sampling_rate":
            raise TypeError(f"{name}= is not used for {fmt} files: the file names and scales its leads itself")
    unknown = sorted(set(options) - set(list(params)[1:]))
    if unknown:
        accepted = ", ".join(p for p in list(params)[1:])
        raise TypeError(f"read_ecg(format={fmt!r}) got unexpected option(s) {unknown}; accepted: {accepted}")
    if "waveform" in options and str(options["waveform"]).strip().lower() not in ("rhythm", "median"):
        raise ValueError(f"waveform must be 'rhythm' or 'median', got {options['waveform']!r}")
    try:
        # numeric warnings while decoding a corrupt file are moot: infinities are rejected in `finalize`
        with np.errstate(all="ignore"):
            record = reader(path, **options)
    except (ECGReadError, ImportError):
        raise
    except RecursionError:
        raise ECGReadError(path, "the file is nested too deeply to parse", fmt) from None
    except MemoryError:
        raise ECGReadError(path, "not enough memory to decode the file (corrupt size field?)", fmt) from None
    except Exception as err:  # any other failure inside a parser means this file cannot be decoded
        raise ECGReadError(path, f"cannot decode the file ({type(err).__name__}: {err})", fmt) from err
    if "sampling_rate" not in params and sampling_rate is not None:
        if abs(float(sampling_rate) - record.sampling_rate) > 1e-6 * record.sampling_rate:
            raise ECGReadError(
                path, f"the file is sampled at {record.sampling_rate:g} Hz, not sampling_rate={sampling_rate}", fmt
            )
    return finalize(record, path, fmt)


class ECGDirectoryReader:
    """Iterator over the ECG records of a folder (returned by `read_ecg_dir`).

    Files that cannot be read are skipped and collected in `errors` as `(path, error class name, message)`;
    when the iteration ends, a warning summarises them. Files that are not ECG files (by extension/content:
    READMEs, WFDB `.dat`/`.mat` data files read through their `.hea`, ...) are listed in `skipped`.

    Attributes:
        files (`list[pathlib.Path]`): the files that will be read, in the order of `walk_ecg_files`.
        errors (`list[tuple[str, str, str]]`): unreadable files so far, and, from the start, the entries never
            opened: links leading outside the folder, FIFOs, sockets, devices, dangling links.
        skipped (`list[str]`): files ignored by the walk.
        n_read (`int`): records yielded so far.
    """

    def __init__(self, folder, *, recursive: bool = True, formats=None, progress: bool = True,
                 follow_links: bool = False, **read_kwargs):
        self.folder = Path(os.fspath(folder))
        if not self.folder.is_dir():
            raise NotADirectoryError(f"Not a folder: {self.folder}")
        self.formats = None if formats is None else {normalize_format(f) for f in (
            [formats] if isinstance(formats, str) else formats)}
        self.read_kwargs = read_kwargs
        self.errors: list[tuple[str, str, str]] = []
        self.skipped: list[str] = []
        self.n_read = 0
        self.files: list[Path] = [Path(p) for p in walk_ecg_files(self.folder, recursive=recursive,
                                                                  skipped=self.skipped, errors=self.errors,
                                                                  follow_links=follow_links)]
        self._progress = progress
        self._iter = None

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        return self

    def __next__(self) -> ECGRecord:
        if self._iter is None:
            self._iter = self._generate()
        return next(self._iter)

    def _generate(self):
        from tqdm.auto import tqdm

        bar = tqdm(self.files, desc=f"reading {self.folder.name or self.folder}", unit="file",
                   disable=not self._progress)
        for path in bar:
            try:
                if self.formats is not None:
                    fmt = detect_format(path)
                    if fmt not in self.formats:
                        self.skipped.append(str(path))
                        continue
                record = read_ecg(path, **self.read_kwargs)
            except Exception as err:  # keep walking: report at the end
                self.errors.append((str(path), type(err).__name__, str(err)))
                bar.set_postfix(errors=len(self.errors), refresh=False)
                continue
            self.n_read += 1
            yield record
        bar.close()
        if self.errors:
            shown = "; ".join(f"{Path(p).name}: {m}" for p, _, m in self.errors[:5])
            more = f" (and {len(self.errors) - 5} more, see .errors)" if len(self.errors) > 5 else ""
            warnings.warn(
                f"read_ecg_dir({str(self.folder)!r}): {len(self.errors)} entr{'y' if len(self.errors) == 1 else 'ies'} could not be read ({len(self.files)} "
                f"files tried): {shown}{more}", UserWarning, stacklevel=3,
            )


def read_ecg_dir(folder, *, recursive: bool = True, formats=None, progress: bool = True, follow_links: bool = False,
                 **read_kwargs) -> ECGDirectoryReader:
    """Read every ECG file in a folder, lazily.

    Args:
        folder: the folder to walk.
        recursive (`bool`, defaults to `True`): include sub-folders (hidden ones are skipped).
        formats (`str` or `list[str]`, *optional*): only read files detected as these formats.
        progress (`bool`, defaults to `True`): show a tqdm progress bar.
        follow_links (`bool`, defaults to `False`): read file links whose real path is outside `folder` (a folder of
            links to a dataset); by default they are not opened and are listed in `.errors`.
        **read_kwargs: passed to `read_ecg` for every file (e.g. `sampling_rate=500` for `.npy` files).

    Returns:
        `ECGDirectoryReader`: an iterator of `ECGRecord`s. Each WFDB record is yielded once (through its `.hea`).
        Unreadable files do not stop the walk: they are collected in `.errors` as `(path, error class, message)`
        and summarised in a warning at the end.
    """
    return ECGDirectoryReader(folder, recursive=recursive, formats=formats, progress=progress,
                              follow_links=follow_links, **read_kwargs)
