"""Labels from a record's machine statements (`ECGRecord.metadata["diagnosis_statements"]`).

ECGFounder was trained on GE 12SL statement texts, and clinical archives (MUSE, CardioSoft, Philips, HL7 aECG,
DICOM) carry such statements per ECG; turning them into labels gives a labelled cohort without manual review.

Each statement is normalised (Unicode NFKC, upper case, `&` -> AND, `A-V` -> AV, parenthesised criteria such as
Philips' "(rate< 50)" removed, surrounding `*`, `-`, `<`, `>`, quotes and trailing punctuation removed, spaces
collapsed), then classified:

- `administrative`: confirmation / referral lines ("Confirmed by ...", "Unconfirmed analysis").
- `serial`: comparisons with an earlier ECG ("... NOW EVIDENT IN", "QT HAS LENGTHENED", "When compared with ECG
  of ..."). They describe a change, not this ECG, and give no label unless `include_serial=True` (then, with the
  ECGFounder target, they map to ECGFounder's own serial labels).
- `mapped`: the statement is an ECGFounder label, a known 12SL variant (`data/12sl_statement_variants.csv`), the same
  with the continuation "WITH " added or removed, with a leading qualifier (POSSIBLE, PROBABLE, CONSIDER, CANNOT RULE
  OUT, ...) or a trailing ", AGE UNDETERMINED" removed, or a line that splits at "WITH" / "AND" / "," into parts
  that all map ("SINUS RHYTHM WITH 1ST DEGREE A-V BLOCK").
- `unmapped`: anything else (reported, so coverage can be checked).

The matching is table lookup, not fuzzy matching: a statement gets a label only when its text is that label.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from .crosswalk import IMPLIED_TIERS, crosswalk, read_packaged_table

KINDS = ("mapped", "serial", "administrative", "unmapped")

_SERIAL = re.compile(
    r"NOW EVIDENT|NO LONGER|HA(?:S|VE) REPLACED|(?:LESS|MORE) EVIDENT|NOW (?:DEPRESSED|PRESENT|ELEVATED)|"
    r"HAS (?:SHORTENED|LENGTHENED|DECREASED|INCREASED)|(?:LESS|MORE) (?:DEPRESSED|ELEVATED)|COMPARED WITH|"
    r"NON-SPECIFIC CHANGE IN|NO SIGNIFICANT CHANGE|SINCE (?:LAST|PREVIOUS)|PREVIOUS (?:ECG|TRACING)|"
    r"^CHANGE(?:S)? IN|^(?:NO )?CHANGE FROM"
)
_ADMIN = re.compile(
    r"^(?:CONFIRMED|UNCONFIRMED|REFERRED|REVIEWED|EDITED|OVERREAD|OVER-READ|REQUESTED|ORDERED|ATTENDING|TECHNICIAN|"
    r"TEST REASON|TEST IND|LOCATION|ROOM|ACCOUNT|INTERPRETED|ELECTRONICALLY SIGNED|SIGNED)\b"
)
_QUALIFIERS = ("CANNOT RULE OUT ", "POSSIBLE ", "PROBABLE ", "CONSIDER ", "SUSPECT ", "BORDERLINE ", "OCCASIONAL ",
               "FREQUENT ", "MULTIPLE ", "MULTIFORM ", "A ", "AN ")
_SUFFIXES = (", AGE UNDETERMINED", " AGE UNDETERMINED", ", POSSIBLY ACUTE", " , AGE UNDETERMINED")
_STRIP = " \t*-.,;:!\"'`=~_#<>"


def normalize_statement(text: str) -> str:
    """Canonical form used for matching (see the module docstring)."""
    s = unicodedata.normalize("NFKC", str(text)).upper()
    s = s.replace("&", " AND ").replace("A-V ", "AV ").replace("S-A ", "SA ")
    s = re.sub(r"\([^()]*\)", " ", s)  # Philips appends its criteria in parentheses: "(rate< 50)"
    s = re.sub(r"\s+", " ", s).strip(_STRIP)
    s = re.sub(r"\s+,", ",", s)
    return s.replace(" ,", ",")


@lru_cache(maxsize=1)
def _ecgfounder_index() -> dict[str, str]:
    from ..modeling.ecgfounder_labels import ECGFOUNDER_LABELS

    index = {normalize_statement(label): label for label in ECGFOUNDER_LABELS}
    for row in read_packaged_table("12sl_statement_variants.csv").itertuples(index=False):
        index.setdefault(normalize_statement(row.variant), row.label)
    return index


def _lookup(s: str) -> str | None:
    index = _ecgfounder_index()
    for candidate in (s, s[5:] if s.startswith("WITH ") else "WITH " + s):
        if candidate in index:
            return index[candidate]
    return None


def _match(s: str, depth: int = 0) -> list[str] | None:
    label = _lookup(s)
    if label is not None:
        return [label]
    for suffix in _SUFFIXES:
        if s.endswith(suffix):
            return _match(s[: -len(suffix)].strip(_STRIP), depth)
    bare = s[5:] if s.startswith("WITH ") else s
    for q in _QUALIFIERS:
        if bare.startswith(q):
            return _match(bare[len(q):], depth)
    if depth >= 3:
        return None
    # split at the first separator whose two sides both map
    for sep, keep in ((",", ""), (" WITH ", "WITH "), (" AND ", ""), (" OR ", "")):
        start = 0
        while (k := s.find(sep, start)) > 0:
            left, right = s[:k].strip(_STRIP), (keep + s[k + len(sep):]).strip(_STRIP)
            a, b = _match(left, depth + 1), _match(right, depth + 1)
            if a and b:
                return a + [x for x in b if x not in a]
            start = k + 1
    return None


@dataclass(frozen=True)
class StatementMatch:
    """One statement: its text, normalised text, kind (`KINDS`) and the labels it gives."""

    text: str
    normalized: str
    kind: str
    labels: tuple = ()


@dataclass
class StatementLabels:
    """The labels of one record: `labels` (in first-seen order) and one `StatementMatch` per statement."""

    labels: list = field(default_factory=list)
    statements: list = field(default_factory=list)

    @property
    def unmapped(self) -> list[str]:
        return [m.text for m in self.statements if m.kind == "unmapped"]

    @property
    def serial(self) -> list[str]:
        return [m.text for m in self.statements if m.kind == "serial"]


@lru_cache(maxsize=4)
def _to_target(target: str) -> dict[str, tuple[str, ...]]:
    table = crosswalk("ecgfounder", target)
    out: dict[str, list[str]] = {}
    for row in table.itertuples(index=False):
        if row.tier in IMPLIED_TIERS:
            out.setdefault(row.label, []).append(row.code)
    return {k: tuple(dict.fromkeys(v)) for k, v in out.items()}


def label_statements(statements, target: str = "ecgfounder", include_serial: bool = False) -> StatementLabels:
    """Map one record's machine statements to labels.

    Args:
        statements: list of statement strings (`record.metadata["diagnosis_statements"]`); `None` = none.
        target (`str`): `"ecgfounder"` (the 150 label names, default) or a crosswalk target (`"snomed"`, `"ptbxl"`):
            the ECGFounder labels are then replaced by the codes they imply (tiers exact / broader / composite).
        include_serial (`bool`): give serial-comparison statements their ECGFounder label (ECGFounder target only).
    """
    if isinstance(statements, str):
        statements = [statements]
    mapping = None if target == "ecgfounder" else _to_target(target)
    out = StatementLabels()
    for text in statements or []:
        s = normalize_statement(text)
        if not s:
            continue
        if _ADMIN.search(s):
            out.statements.append(StatementMatch(text, s, "administrative"))
            continue
        serial = bool(_SERIAL.search(s))
        labels = _match(s) if (not serial or (include_serial and mapping is None)) else None
        if labels and mapping is not None:
            labels = [code for label in labels for code in mapping.get(label, ())]
        kind = "serial" if serial else ("mapped" if labels else "unmapped")
        if kind == "mapped" and not labels:
            kind = "unmapped"
        out.statements.append(StatementMatch(text, s, kind, tuple(labels or ())))
        for label in labels or ():
            if label not in out.labels:
                out.labels.append(label)
    return out


def statement_coverage(results) -> dict:
    """Coverage over many records' `StatementLabels`: statement counts per kind, the fraction of clinical statements
    (mapped + unmapped) that mapped, records with at least one label, and the most frequent unmapped texts."""
    from collections import Counter

    kinds, unmapped = Counter(), Counter()
    n_records = n_labelled = 0
    for r in results:
        n_records += 1
        n_labelled += bool(r.labels)
        for m in r.statements:
            kinds[m.kind] += 1
            if m.kind == "unmapped":
                unmapped[m.normalized] += 1
    clinical = kinds["mapped"] + kinds["unmapped"]
    return {
        "records": n_records,
        "records_labelled": n_labelled,
        "statements": {k: kinds[k] for k in KINDS},
        "mapped_fraction": kinds["mapped"] / clinical if clinical else float("nan"),
        "top_unmapped": unmapped.most_common(20),
    }
