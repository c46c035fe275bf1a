"""`build_targets`: EHR extracts + a phecode map -> sparse targets (a folder) or the wide label table.

The heavy joins run in DuckDB on a temporary database file (out of core: it spills to disk under `memory_limit`):
diagnoses -> earliest date per patient and code -> earliest date per patient and phecode (through the map's
`phecode_unrolled` rows) -> earliest exclusion date per patient and condition (through `exclude_range`). The
per-ECG comparison with the acquisition date is `targets.cell_targets`, vectorised over chunks of ECGs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .inputs import load_inputs
from .phecode_map import PhecodeMap, load_phecode_map
from .targets import DAYS_PER_YEAR, NO_DAY, SparseTargets, cell_targets, gather, phecode_label_space, write_wide

_EPOCH_DAYS = "CAST(({d}) - DATE '1970-01-01' AS INTEGER)"


def _connect(workdir: Path, threads: int | None, memory_limit: str | None):
    import duckdb

    con = duckdb.connect(str(workdir / "ehr.duckdb"))
    con.execute(f"SET temp_directory = '{workdir / 'spill'}'")
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


def _timed(log):
    start = time.perf_counter()
    return lambda msg: log(f"[{time.perf_counter() - start:7.1f} s] {msg}")


def build_targets(
    ecgs, diagnoses, follow_up, out, *, phecode_map: str | PhecodeMap = "phecode1.2", horizon: float = 10.0,
    prevalence_window: int = 0, min_cases: int = 50, threads: int | None = None, memory_limit: str | None = "4GB",
    log=None,
) -> dict:
    """Build targets; `out` is a folder (sparse form) or a `.csv` / `.parquet` file (the wide label table).

    Raises `EHRInputError` (every bad row) before any work, `PhecodeMapError` for an unusable map.
    Returns the summary (also written as `summary.json`, or `<out>.summary.json` beside a wide table).
    """
    log = _timed(log or (lambda msg: None))
    if horizon <= 0:
        raise ValueError(f"--horizon must be > 0 years, got {horizon}")
    if prevalence_window < 0:
        raise ValueError(f"--prevalence-window must be >= 0 days, got {prevalence_window}")
    pmap = phecode_map if isinstance(phecode_map, PhecodeMap) else load_phecode_map(phecode_map)
    out = Path(out)
    wide = out.suffix.lower() in (".csv", ".parquet", ".pq")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".anyecg-ehr-", dir=out.parent))
    started = time.perf_counter()
    try:
        con = _connect(work, threads, memory_limit)
        load_inputs(con, ecgs, diagnoses, follow_up)
        log("inputs read and checked")
        stage = work / "targets"
        stage.mkdir()
        summary = _compute(con, pmap, stage, horizon, prevalence_window, min_cases, log)
        con.close()
        summary["seconds"] = round(time.perf_counter() - started, 2)
        (stage / "summary.json").write_text(json.dumps(summary, indent=2))
        if wide:
            table = SparseTargets.load(stage).to_frame()
            tmp = work / ("labels" + out.suffix)
            write_wide(table, tmp)
            os.replace(tmp, out)
            base = out.with_suffix("")
            shutil.copyfile(stage / "diagnosis_label_space.csv", f"{base}.label_space.csv")
            shutil.copyfile(stage / "conditions.csv", f"{base}.conditions.csv")
            Path(f"{base}.summary.json").write_text(json.dumps(summary, indent=2))
        else:
            if out.exists():
                if out.is_dir() and (not any(out.iterdir()) or (out / "summary.json").exists()):
                    shutil.rmtree(out)
                else:
                    raise ValueError(f"{out} exists and is not a targets folder written by anyecg build-targets.")
            os.replace(stage, out)
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _compute(con, pmap: PhecodeMap, stage: Path, horizon: float, window: int, min_cases: int, log) -> dict:
    horizon_days = float(horizon) * DAYS_PER_YEAR
    con.register("map_codes_df", pmap.codes)
    con.register("map_excl_df", pmap.exclusions)
    con.execute("CREATE TABLE map_codes AS SELECT CAST(flag AS TINYINT) AS flag, code, cidx FROM map_codes_df")
    con.execute("CREATE TABLE map_excl AS SELECT cidx, eidx FROM map_excl_df")
    con.execute("""CREATE TABLE patients AS SELECT patient_id, CAST(row_number() OVER (ORDER BY patient_id) - 1 AS INTEGER)
                   AS pidx FROM (SELECT DISTINCT patient_id FROM ecgs)""")
    # earliest date per patient (only patients with an ECG) and phecode, through the map's rows
    unmapped = con.execute("""SELECT d.vocab, d.code, count(*) AS n FROM diagnoses d ANTI JOIN map_codes m
                              ON d.vocab = m.flag AND d.code = m.code GROUP BY ALL ORDER BY n DESC, d.code""").df()
    con.execute("""CREATE TABLE onsets AS SELECT p.pidx, m.cidx, min(d.day) AS day FROM diagnoses d
                   JOIN patients p USING (patient_id) JOIN map_codes m ON d.vocab = m.flag AND d.code = m.code
                   GROUP BY ALL""")
    log("onsets per patient and phecode")
    # for counting only: per onset, the earliest earlier date of a phecode in the condition's exclude_range (an
    # exclusion on or after the onset can never mask; exclusions without an onset do not change any count)
    con.execute("""CREATE TABLE onset_excl AS SELECT o.pidx, o.cidx, min(o2.day) AS day FROM onsets o
                   JOIN map_excl x ON x.cidx = o.cidx JOIN onsets o2 ON o2.pidx = o.pidx AND o2.cidx = x.eidx
                   WHERE o2.day < o.day GROUP BY ALL""")
    log("exclusions of the onsets")
    con.execute(f"""CREATE TABLE ecg_targets AS SELECT e.row, e.ecg_id, e.patient_id, p.pidx, e.path, e.t0,
        CASE f.sex WHEN 1 THEN 'M' WHEN 2 THEN 'F' ELSE NULL END AS sex,
        CASE WHEN f.end_day IS NULL OR f.end_day < e.t0 OR f.death_day < e.t0 THEN NULL
             ELSE least(CAST(f.end_day - e.t0 AS DOUBLE), coalesce(CAST(f.death_day - e.t0 AS DOUBLE), 1e12),
                        {horizon_days!r}) / {DAYS_PER_YEAR!r} END AS censor_years
        FROM ecgs_rows e JOIN patients p USING (patient_id) LEFT JOIN follow_up f USING (patient_id)""")
    log("censoring times per ECG")

    # ---- counts per phecode over ECGs (one pass over onset entries, chunks of ECGs)
    ecg = con.execute(f"""SELECT pidx, {_EPOCH_DAYS.format(d='t0')} AS t0, coalesce(CASE sex WHEN 'M' THEN 1 WHEN 'F'
                          THEN 2 END, 0) AS sex, coalesce(censor_years, 'NaN'::DOUBLE) AS censor FROM ecg_targets
                          ORDER BY row""").fetchnumpy()
    n_pat = con.execute("SELECT count(*) FROM patients").fetchall()[0][0]
    ent = con.execute(f"""SELECT o.pidx, o.cidx, {_EPOCH_DAYS.format(d='o.day')} AS onset,
                          coalesce({_EPOCH_DAYS.format(d='x.day')}, {int(NO_DAY)}) AS excl
                          FROM onsets o LEFT JOIN onset_excl x USING (pidx, cidx) ORDER BY o.pidx""").fetchnumpy()
    log("entries fetched")
    ptr = np.zeros(n_pat + 1, np.int64)
    np.cumsum(np.bincount(ent["pidx"].astype(np.int64), minlength=n_pat), out=ptr[1:])
    k = len(pmap.phecodes)
    positives = np.zeros(k, np.int64)
    events = np.zeros(k, np.int64)
    cond_sex = pmap.phecodes["sex"].to_numpy(np.int8)
    pidx = ecg["pidx"].astype(np.int64)
    chunk = 50000
    for start in range(0, len(pidx), chunk):
        sl = slice(start, start + chunk)
        pos, idx = gather(ptr, pidx[sl])
        cidx = ent["cidx"][idx]
        label, mask, _, event, _ = cell_targets(ecg["t0"][sl][pos], ecg["sex"][sl][pos], ecg["censor"][sl][pos],
                                                cond_sex[cidx], ent["onset"][idx], ent["excl"][idx], window)
        positives += np.bincount(cidx[(label > 0) & mask], minlength=k)
        events += np.bincount(cidx[event > 0], minlength=k)
    keep = (positives >= min_cases) | (events >= min_cases)
    conditions = pmap.phecodes.assign(positives=positives, events=events, kept=keep)
    conditions["index"] = pd.array(np.where(keep, np.cumsum(keep) - 1, -1)).astype("Int32")
    conditions.loc[~keep, "index"] = pd.NA
    kept = conditions[keep]
    # onsets kept: those of kept conditions and of phecodes that exclude a kept condition
    needed = np.zeros(k, bool)
    needed[keep] = True
    excl_map = pmap.exclusions[keep[pmap.exclusions["cidx"].to_numpy()]]
    needed[excl_map["eidx"].to_numpy()] = True
    con.register("needed_df", pd.DataFrame({"cidx": np.flatnonzero(needed).astype(np.int32)}))
    log(f"counted: {int(keep.sum())} of {k} conditions kept")

    # ---- write the sparse form
    def copy(query, name):
        con.execute(f"COPY ({query}) TO '{stage / name}' (FORMAT parquet, COMPRESSION zstd)")

    copy("SELECT ecg_id, patient_id, pidx AS patient_index, path, t0 AS acquisition_date, sex, censor_years "
         "FROM ecg_targets ORDER BY row", "ecgs.parquet")
    copy("SELECT o.pidx AS patient_index, o.cidx AS phecode_index, o.day AS onset_date FROM onsets o "
         "SEMI JOIN needed_df n USING (cidx) ORDER BY 1, 2", "onsets.parquet")
    ph = pmap.phecodes["phecode"].to_numpy()
    pd.DataFrame({"condition": ph[excl_map["cidx"]], "excluded_by": ph[excl_map["eidx"]],
                  "condition_phecode_index": excl_map["cidx"], "excluded_by_phecode_index": excl_map["eidx"]}).sort_values(
        ["condition_phecode_index", "excluded_by_phecode_index"]).to_csv(stage / "exclusion_map.csv", index=False)
    conditions.insert(0, "phecode_index", np.arange(k))
    conditions.to_csv(stage / "conditions.csv", index=False)
    if len(kept):
        for head in ("diagnosis", "risk"):
            phecode_label_space(kept, f"phecodes ({head})").save(stage / f"{head}_label_space.csv")
    else:
        for head in ("diagnosis", "risk"):
            (stage / f"{head}_label_space.csv").write_text("id,name,code_system,code,category,threshold\n")

    log("sparse targets written")
    counts = {name: con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
              for name in ("ecgs", "diagnoses", "follow_up", "patients", "onsets", "onset_excl")}
    fu = con.execute("""SELECT count(*) FILTER (WHERE censor_years IS NULL), count(*) FILTER (WHERE sex IS NULL)
                        FROM ecg_targets""").fetchall()[0]
    return {
        "parameters": {"horizon_years": float(horizon), "prevalence_window_days": int(window), "min_cases": int(min_cases),
                       "days_per_year": DAYS_PER_YEAR},
        "map": {"source": pmap.source, "sha256": pmap.sha256, "phecodes": k},
        "inputs": {"ecgs": counts["ecgs"], "diagnosis_rows": counts["diagnoses"], "follow_up_rows": counts["follow_up"],
                   "patients_with_ecgs": counts["patients"]},
        "ecgs_with_unknown_follow_up": int(fu[0]), "ecgs_with_unknown_sex": int(fu[1]),
        "unmapped_codes": {"rows": int(unmapped["n"].sum()), "distinct_codes": len(unmapped),
                           "top": [{"vocabulary": f"ICD{int(v)}CM", "code": c, "rows": int(n)}
                                   for v, c, n in unmapped.head(50).itertuples(index=False)]},
        "sparse_entries": {"onsets_all_phecodes": counts["onsets"], "onsets_with_earlier_exclusion": counts["onset_excl"]},
        "conditions_kept": int(keep.sum()),
        "conditions_dropped": [{"phecode": r.phecode, "name": r.name, "positives": int(r.positives), "events": int(r.events)}
                               for r in conditions[~keep].itertuples()],
        "diagnosis_positives": int(positives[keep].sum()), "events": int(events[keep].sum()),
    }
