"""The one folder walk of the package: which files under a folder are ECG inputs, in a deterministic order.

Used by `read_ecg_dir`, the archive engine's input discovery (`anyecg profile/embed`) and the dataset builder, so
the three agree on what a folder holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .detect import EXTENSIONS, WFDB_DATA_EXTENSIONS, sniff_format
from .record import ECGReadError, check_regular

__all__ = ["is_ecg_file", "outside_root", "walk_ecg_files"]


def outside_root(path, root) -> str | None:
    """Where `path` really leads when that is outside the folder `root` (a symlink, or a link in its parents,
    leaving the input folder), else `None`. Folder walks skip such files and report them: a link to `/etc/passwd`
    in an input folder must not be read as samples."""
    real = os.path.realpath(path)
    base = os.path.realpath(root)
    if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
        return None
    return real


def is_ecg_file(path) -> bool:
    """The readers' rule for whether a folder walk should try `path`: a known ECG extension, any XML, or an
    extension-less file whose first 64 KiB sniff as an ECG format. WFDB data files (`.mat`, `.dat`) are not: a
    record is read through its `.hea`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in WFDB_DATA_EXTENSIONS:
        return False
    if suffix in EXTENSIONS or suffix == ".xml":
        return True
    if suffix == "":
        try:
            check_regular(path)  # an extension-less FIFO must not block discovery
            with open(path, "rb") as f:
                head = f.read(65536)
            return sniff_format(head) is not None
        except (OSError, ECGReadError):
            return False
    return False


def walk_ecg_files(folder, *, recursive: bool = True, extensions=None, skipped: list | None = None,
                   errors: list | None = None, follow_links: bool = False) -> Iterator[str]:
    """Yield the ECG files under `folder` (paths joined to `folder` as given): each folder's files sorted by name,
    then its sub-folders in sorted order (`os.walk` top-down, links to folders not followed); hidden files and
    folders are skipped; a WFDB data file with its `.hea` beside it is part of that record, not an input of its own.

    Args:
        folder (`str` or `os.PathLike`): the folder.
        recursive (`bool`): walk sub-folders too.
        extensions (*optional*): lower-case extensions with a dot to keep (e.g. `(".hea", ".xml")`), or `"*"` for
            every file; `None` applies `is_ecg_file`.
        skipped (`list`, *optional*): receives the files left out (other than WFDB data files of a record).
        errors (`list`, *optional*): when given, entries that must never be opened are left out and reported here
            as `(path, error class, message)`: links leading outside `folder` (their target is not named: it may be
            a secret), FIFOs, sockets, devices and dangling links.
        follow_links (`bool`, defaults to `False`): read file links leading outside `folder` (a folder of links to
            a dataset elsewhere); links to folders are still not walked.
    """
    root_folder = os.fspath(folder)
    for root, dirs, files in os.walk(root_folder):
        kept = []
        for d in sorted(dirs):
            path = os.path.join(root, d)
            if d.startswith("."):
                continue
            if errors is not None and outside_root(path, root_folder) is not None:
                errors.append((path, "ECGReadError", f"{path}: a link leading outside the input folder: skipped"))
                continue
            kept.append(d)
        dirs[:] = kept if recursive else []
        names = set(files)
        for name in sorted(files):
            if name.startswith("."):
                continue
            stem, ext = os.path.splitext(name)
            ext = ext.lower()
            if ext in WFDB_DATA_EXTENSIONS and any(stem + h in names for h in (".hea", ".HEA")):
                continue  # the record's input is its header
            path = os.path.join(root, name)
            if errors is not None and _refused(path, root_folder, errors, follow_links):
                continue
            keep = is_ecg_file(path) if extensions is None else (extensions == "*" or ext in extensions)
            if keep:
                yield path
            elif skipped is not None:
                skipped.append(path)


def _refused(path: str, root: str, errors: list, follow_links: bool = False) -> bool:
    if not (follow_links and os.path.isfile(path)) and outside_root(path, root) is not None:
        errors.append((path, "ECGReadError", f"{path}: a link leading outside the input folder: skipped"))
        return True
    if not os.path.isfile(path):  # FIFO, socket, device, dangling link: never opened
        if os.path.islink(path) and not os.path.exists(path):
            errors.append((path, "FileNotFoundError", f"{path}: dangling symlink"))
        else:
            errors.append((path, "ECGReadError", f"{path}: not a regular file (FIFO, socket or device): not opened"))
        return True
    return False
