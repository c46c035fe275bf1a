"""Read and check the three EHR extracts in DuckDB, before any work; every problem of every file in ONE error.

* ecgs: `ecg_id, patient_id, acquisition_time` (ISO date or datetime), optional `path`.
* diagnoses: `patient_id, code, vocabulary` (ICD9CM | ICD10CM, or 9 | 10, any case), `date`.
* follow-up: `patient_id, end_of_follow_up`, optional `death_date`, optional `sex` (M / F / Male / Female, any case;
  anything else or blank = unknown).

Files are CSV / TSV / Parquet, read as text by DuckDB (out of core: tables live in a temporary database file that
spills to disk), so ids such as `00123` keep their zeros. Dates keep the day as written: `2020-01-05T23:10:00+02:00`
is 2020-01-05 (time of day and offset dropped).

Problems (`EHRInputError`, exit 2 in the CLI), each with its 1-based data row (CSV line = row + 1) and value:
unparseable dates, an ECG whose patient has no row in the diagnoses or follow-up files, unknown vocabularies,
duplicate ECG ids, plus empty ids / codes, duplicate follow-up rows. A blank `end_of_follow_up` means follow-up is
unknown (risk masked); a blank `death_date` means no recorded death.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .phecode_map import normalize_code_sql, vocabulary_sql

MAX_LISTED_PER_KIND = 1000

COLUMNS = {
    "ecgs": (("ecg_id", "patient_id", "acquisition_time"), ("path",)),
    "diagnoses": (("patient_id", "code", "vocabulary", "date"), ()),
    "follow_up": (("patient_id", "end_of_follow_up"), ("death_date", "sex")),
}


@dataclass(frozen=True)
class InputProblem:
    file: str
    kind: str
    row: int | None  # 1-based data row
    message: str


class EHRInputError(ValueError):
    """Bad EHR input; `problems` lists every offending row (the message groups them by file and kind)."""

    def __init__(self, problems: list[InputProblem], totals: dict | None = None):
        self.problems = list(problems)
        totals = totals or {}
        lines = [f"{sum(totals.values()) or len(self.problems)} problem(s) in the EHR input; nothing was built."]
        groups: dict[tuple[str, str], list[InputProblem]] = {}
        for p in self.problems:
            groups.setdefault((p.file, p.kind), []).append(p)
        for (file, kind), items in groups.items():
            total = totals.get((file, kind), len(items))
            lines.append(f"  {file}: {kind} ({total}):")
            for p in items:
                where = "" if p.row is None else f"row {p.row} (line {p.row + 1}): "
                lines.append(f"    {where}{p.message}")
            if total > len(items):
                lines.append(f"    ... and {total - len(items)} more")
        super().__init__("\n".join(lines))


def _quote(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _source_sql(path: str) -> str:
    lower = path.lower()
    if lower.endswith((".parquet", ".pq")):
        return f"read_parquet({_quote(path)})"
    delim = "\\t" if lower.endswith((".tsv", ".tab")) else ","
    return f"read_csv({_quote(path)}, all_varchar=true, header=true, delim='{delim}', quote='\"', escape='\"')"


def load_inputs(con, ecgs, diagnoses, follow_up) -> None:
    """Create tables `ecgs`, `diagnoses`, `follow_up` (typed, with `row` = 1-based data row) or raise
    `EHRInputError` listing every problem."""
    problems: list[InputProblem] = []
    totals: dict = {}
    paths = {"ecgs": ecgs, "diagnoses": diagnoses, "follow_up": follow_up}
    cols: dict[str, set] = {}
    for name, path in paths.items():
        path = os.fspath(path)
        if not os.path.exists(path):
            raise EHRInputError([InputProblem(path, "missing file", None, "the file does not exist")])
        try:
            found = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {_source_sql(path)}").fetchall()]
        except Exception as err:  # duckdb raises many error classes for unreadable files
            raise EHRInputError([InputProblem(path, "unreadable file", None, str(err).splitlines()[0])]) from None
        required, optional = COLUMNS[name]
        renames = {c.strip().lower(): c for c in found}
        missing = [c for c in required if c not in renames]
        if missing:
            problems.append(InputProblem(path, "missing column", None, f"needs column(s) {missing}; found {sorted(found)}"))
        cols[name] = {c: renames.get(c) for c in required + optional}
    if problems:
        raise EHRInputError(problems)

    def col(name, c, default="NULL"):
        real = cols[name][c]
        return default if real is None else f"NULLIF(trim(CAST(\"{real}\" AS VARCHAR)), '')"

    def date(expr):
        return f"TRY_CAST({expr} AS DATE)"

    def bad(expr, parsed):  # the text only where it does not parse (keeps the tables slim)
        return f"CASE WHEN {parsed} IS NULL THEN {expr} END"

    # One pass per file: typed columns straight from the reader; `rowid` is the data row (insertion order kept).
    src = {name: _source_sql(os.fspath(path)) for name, path in paths.items()}
    t0, ok_vocab, day = date(col("ecgs", "acquisition_time")), vocabulary_sql(col("diagnoses", "vocabulary")), \
        date(col("diagnoses", "date"))
    con.execute(f"""CREATE OR REPLACE TABLE ecgs AS SELECT {col('ecgs', 'ecg_id')} AS ecg_id,
        {col('ecgs', 'patient_id')} AS patient_id, {bad(col('ecgs', 'acquisition_time'), t0)} AS time_text,
        {t0} AS t0, {col('ecgs', 'path')} AS path FROM {src['ecgs']}""")
    con.execute(f"""CREATE OR REPLACE TABLE diagnoses AS SELECT {col('diagnoses', 'patient_id')} AS patient_id,
        {normalize_code_sql(col('diagnoses', 'code'))} AS code, {bad(col('diagnoses', 'vocabulary'), ok_vocab)} AS vocab_text,
        CAST({ok_vocab} AS TINYINT) AS vocab, {bad(col('diagnoses', 'date'), day)} AS date_text, {day} AS day
        FROM {src['diagnoses']}""")
    end, death = date(col("follow_up", "end_of_follow_up")), date(col("follow_up", "death_date"))
    sex = f"upper({col('follow_up', 'sex')})"
    con.execute(f"""CREATE OR REPLACE TABLE follow_up AS SELECT {col('follow_up', 'patient_id')} AS patient_id,
        {bad(col('follow_up', 'end_of_follow_up'), end)} AS end_text, {end} AS end_day,
        {bad(col('follow_up', 'death_date'), death)} AS death_text, {death} AS death_day,
        CAST(CASE WHEN {sex} IN ('M', 'MALE') THEN 1 WHEN {sex} IN ('F', 'FEMALE') THEN 2 ELSE 0 END AS TINYINT) AS sex
        FROM {src['follow_up']}""")
    for name in paths:
        con.execute(f"CREATE OR REPLACE VIEW {name}_rows AS SELECT rowid + 1 AS row, * FROM {name}")

    dup = ("SELECT row, '{c} ''' || {c} || ''' already on row ' || first AS msg FROM (SELECT row, {c}, "
           "min(row) OVER (PARTITION BY {c}) AS first FROM {t}_rows WHERE {c} IS NOT NULL) WHERE row > first")
    iso = " (expected an ISO date or datetime)'"
    checks = [
        ("ecgs", "empty ecg_id", "SELECT row, 'ecg_id is empty' FROM ecgs_rows WHERE ecg_id IS NULL"),
        ("ecgs", "empty patient_id", "SELECT row, 'patient_id is empty' FROM ecgs_rows WHERE patient_id IS NULL"),
        ("ecgs", "unparseable date", "SELECT row, 'acquisition_time ' || coalesce('''' || time_text || '''', 'is empty') "
         f"|| '{iso} FROM ecgs_rows WHERE t0 IS NULL"),
        ("ecgs", "duplicate ecg id", dup.format(c="ecg_id", t="ecgs")),
        ("ecgs", "patient with no EHR row", "SELECT row, 'patient_id ''' || patient_id || ''' has no row in the "
         "diagnoses or follow-up files' FROM ecgs_rows WHERE patient_id IS NOT NULL AND patient_id NOT IN (SELECT patient_id "
         "FROM diagnoses_rows WHERE patient_id IS NOT NULL UNION SELECT patient_id FROM follow_up_rows WHERE patient_id IS NOT NULL)"),
        ("diagnoses", "empty patient_id", "SELECT row, 'patient_id is empty' FROM diagnoses_rows WHERE patient_id IS NULL"),
        ("diagnoses", "empty code", "SELECT row, 'code is empty' FROM diagnoses_rows WHERE code IS NULL OR code = ''"),
        ("diagnoses", "unknown vocabulary", "SELECT row, 'vocabulary ' || coalesce('''' || vocab_text || '''', 'is empty') "
         "|| ' (expected ICD9CM, ICD10CM, 9 or 10)' FROM diagnoses_rows WHERE vocab IS NULL"),
        ("diagnoses", "unparseable date", "SELECT row, 'date ' || coalesce('''' || date_text || '''', 'is empty') "
         f"|| '{iso} FROM diagnoses_rows WHERE day IS NULL"),
        ("follow_up", "empty patient_id", "SELECT row, 'patient_id is empty' FROM follow_up_rows WHERE patient_id IS NULL"),
        ("follow_up", "unparseable date", "SELECT row, 'end_of_follow_up ''' || end_text || '''"
         f"{iso} FROM follow_up_rows WHERE end_text IS NOT NULL AND end_day IS NULL UNION ALL SELECT row, 'death_date ''' || "
         f"death_text || '''{iso} FROM follow_up_rows WHERE death_text IS NOT NULL AND death_day IS NULL"),
        ("follow_up", "duplicate patient", dup.format(c="patient_id", t="follow_up")),
    ]
    for table, kind, query in checks:
        file = os.fspath(paths[table])
        n = con.execute(f"SELECT count(*) FROM ({query})").fetchall()[0][0]
        if not n:
            continue
        totals[(file, kind)] = n
        rows = con.execute(f"SELECT * FROM ({query}) ORDER BY 1 LIMIT {MAX_LISTED_PER_KIND}").fetchall()
        problems += [InputProblem(file, kind, int(r), str(m)) for r, m in rows]
    if problems:
        raise EHRInputError(problems, totals)
