"""Format detection: file content first (XML root tag, DICOM preamble, EDF header, SCP-ECG section layout, NumPy
magic), file extension second."""

from __future__ import annotations

import re
import struct
from pathlib import Path

from .record import ECGReadError, check_regular

FORMATS = ("wfdb", "muse", "cardiosoft", "philips", "hl7", "dicom", "scp", "edf", "csv", "npy", "npz")

# extension -> format, used when the content does not decide
EXTENSIONS = {
    ".hea": "wfdb",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".scp": "scp",
    ".edf": "edf",
    ".bdf": "edf",
    ".csv": "csv",
    ".tsv": "csv",
    ".npy": "npy",
    ".npz": "npz",
}
WFDB_DATA_EXTENSIONS = (".mat", ".dat")

_SNIFF_BYTES = 65536

# lower-cased XML root element -> format
_XML_ROOTS = {"restingecg": "muse", "cardiologyxml": "cardiosoft", "restingecgdata": "philips",
              "annotatedecg": "hl7"}
_XML_UNSUPPORTED: dict[str, str] = {}
_XML_SKIP = re.compile(r"\s*(<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^\[>]*(\[.*?\])?\s*>)", re.S | re.I)
_XML_TAG = re.compile(r"\s*<([A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")


def _decode_head(head: bytes) -> str:
    """Text of the first bytes of a file (UTF-16 with or without BOM, else Latin-1, which never fails)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head[2:].decode("utf-16-le" if head[:2] == b"\xff\xfe" else "utf-16-be", errors="ignore")
    if len(head) >= 4 and head[0] == 0 and head[1] != 0 and head[2] == 0:
        return head.decode("utf-16-be", errors="ignore")
    if len(head) >= 4 and head[1] == 0 and head[0] != 0 and head[3] == 0:
        return head.decode("utf-16-le", errors="ignore")
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    return head.decode("latin-1")


def xml_root_tag(head: bytes) -> str | None:
    """Local name of the root element of an XML document from its first bytes, `None` if not XML."""
    text = _decode_head(head)
    pos = 0
    while True:
        m = _XML_SKIP.match(text, pos)
        if not m:
            break
        pos = m.end()
    m = _XML_TAG.match(text, pos)
    return m.group(2) if m else None


def _is_edf(head: bytes) -> bool:
    if len(head) < 256 or head[:8] != b"0       ":
        return False
    try:
        header_bytes = int(head[184:192].decode("ascii"))
        n_signals = int(head[252:256].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return False
    return n_signals > 0 and header_bytes == 256 * (n_signals + 1)


def _is_scp(head: bytes) -> bool:
    # 6-byte preamble (CRC, record size), then Section 0 whose header carries id 0 and whose first pointer is
    # Section 0 itself at byte 7 (1-based).
    if len(head) < 32:
        return False
    sec_id, sec_len = struct.unpack_from("<HI", head, 8)
    first_id, _, first_index = struct.unpack_from("<HII", head, 22)
    return sec_id == 0 and sec_len >= 26 and first_id == 0 and first_index == 7


def sniff_format(head: bytes) -> str | None:
    """Format from the first bytes of a file, or `None` when the content alone does not tell.

    Raises:
        ECGReadError: (with path `"<bytes>"`) for a recognised but unsupported format such as GE CardioSoft XML.
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if _is_edf(head):
        return "edf"
    if head.startswith(b"\xffBIOSEMI"):  # BDF: EDF with 24-bit samples, read by the same reader
        return "edf"
    if _is_scp(head):
        return "scp"
    stripped = head.lstrip(b"\xef\xbb\xbf\xff\xfe \t\r\n\x00")
    if stripped.startswith(b"<"):
        root = xml_root_tag(head)
        if root is not None:
            key = root.lower()
            if key in _XML_UNSUPPORTED:
                raise ECGReadError("<bytes>", _XML_UNSUPPORTED[key])
            return _XML_ROOTS.get(key)
    return None


def wfdb_header_for(path: Path) -> Path | None:
    """The `.hea` of a WFDB record given its header, data file (`.mat`/`.dat`) or extension-less record path."""
    if path.suffix.lower() == ".hea":
        return path
    if path.suffix.lower() in WFDB_DATA_EXTENSIONS or not path.exists():
        hea = path.with_suffix(".hea") if path.suffix.lower() in WFDB_DATA_EXTENSIONS else Path(str(path) + ".hea")
        return hea if hea.is_file() else None
    return None


def detect_format(path) -> str:
    """The format name (one of `FORMATS`) of the file at `path`.

    Content decides first (XML root element, DICOM `DICM` preamble, EDF header, SCP-ECG section layout, NumPy
    magic); the extension second. A WFDB record is recognised from its `.hea`, its `.mat`/`.dat` (with a `.hea`
    beside it) or its path without extension.

    Raises:
        ECGReadError: when the format cannot be told or is not supported.
        FileNotFoundError: when nothing exists at `path`.
    """
    path = Path(path)
    if not path.exists():
        if wfdb_header_for(path) is not None:
            return "wfdb"
        raise FileNotFoundError(f"No such file: {path}")
    if path.is_dir():
        raise ECGReadError(path, "is a directory (use read_ecg_dir)")
    check_regular(path)  # a FIFO would block the open below forever
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    try:
        fmt = sniff_format(head)
    except ECGReadError as err:
        raise ECGReadError(path, err.reason) from None
    if fmt is not None:
        return fmt
    suffix = path.suffix.lower()
    if suffix in WFDB_DATA_EXTENSIONS and wfdb_header_for(path) is not None:
        return "wfdb"
    if suffix == ".npz" or (head.startswith(b"PK\x03\x04") and suffix in ("", ".npz")):
        return "npz"
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if suffix == ".xml":
        root = xml_root_tag(head)
        raise ECGReadError(
            path,
            f"XML root element <{root}> is not a supported ECG format (GE MUSE <RestingECG>, GE CardioSoft "
            "<CardiologyXML>, Philips <restingecgdata>, HL7 <AnnotatedECG>)" if root
            else "not a well-formed XML document",
        )
    raise ECGReadError(
        path, f"cannot tell the ECG format from the content or the extension {suffix!r}; pass format= "
        f"(one of {', '.join(FORMATS)})"
    )
