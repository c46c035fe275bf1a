"""Safe XML parsing shared by the MUSE and HL7 aECG readers (defusedxml: no external entities, no entity
declarations, so no billion-laughs expansion; DOCTYPE lines such as MUSE's `restecg.dtd` are allowed but never
fetched)."""

from __future__ import annotations

import base64
import binascii
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .record import ECGReadError, check_size

_WS = re.compile(rb"\s+")


def parse_xml(path: Path, fmt: str, max_bytes: int) -> ET.Element:
    """Parse `path` into an element tree with namespace prefixes removed from tags and attribute names."""
    from defusedxml import DefusedXmlException
    from defusedxml import ElementTree as SafeET

    check_size(path, max_bytes, fmt)
    data = path.read_bytes()
    try:
        root = SafeET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as err:
        raise ECGReadError(path, f"XML uses a construct refused for safety ({type(err).__name__})", fmt) from None
    except ET.ParseError as err:
        raise ECGReadError(path, f"malformed XML ({err})", fmt) from None
    except LookupError as err:  # unknown encoding in the XML declaration
        raise ECGReadError(path, f"malformed XML ({err})", fmt) from None
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.rsplit("}", 1)[1]
        if any("}" in k for k in el.attrib):
            el.attrib = {k.rsplit("}", 1)[-1]: v for k, v in el.attrib.items()}
    return root


def text(el: ET.Element | None, default: str | None = None) -> str | None:
    """Stripped text of an element, `default` when missing or empty."""
    if el is None or el.text is None:
        return default
    value = el.text.strip()
    return value if value else default


def child_text(parent: ET.Element | None, path: str, default: str | None = None) -> str | None:
    return text(parent.find(path), default) if parent is not None else default


def find_ci(parent: ET.Element, name: str) -> ET.Element | None:
    """First child whose tag equals `name` case-insensitively."""
    key = name.lower()
    for child in parent:
        if isinstance(child.tag, str) and child.tag.lower() == key:
            return child
    return None


def b64decode_strict(data: str, path: Path, fmt: str, what: str) -> bytes:
    """Base64 with whitespace ignored and every other non-alphabet character an error."""
    raw = _WS.sub(b"", data.encode("ascii", errors="replace"))
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ECGReadError(path, f"{what}: invalid base64 ({err})", fmt) from None
