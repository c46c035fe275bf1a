"""Comorbidity analysis: how conditions co-occur over a cohort, observed (labels) vs predicted (model).

For every pair of conditions :math:`(a, b)` the people with both labels known give a 2x2 table

=========  ==========  ==========
           b present   b absent
=========  ==========  ==========
a present  :math:`n_{11}`  :math:`n_{10}`
a absent   :math:`n_{01}`  :math:`n_{00}`
=========  ==========  ==========

built once from the observed labels and once from the predictions thresholded at each condition's decision
threshold (same people, so the two are directly comparable). From each table:

* **odds ratio** :math:`OR = n_{11}n_{00} / (n_{10}n_{01})` with Woolf's confidence interval
  :math:`\\exp(\\log OR \\pm z\\sqrt{1/n_{11}+1/n_{10}+1/n_{01}+1/n_{00}})`. Haldane-Anscombe correction (default,
  `correction="haldane"`): when a table has a zero cell, 0.5 is added to all four cells before the OR and its CI
  (`"always"` adds it to every table, `None` never, giving 0 / inf / NaN);
* **phi** (the Pearson correlation of the two binary variables, = Matthews correlation)
  :math:`\\phi = (n_{11}n_{00} - n_{10}n_{01}) / \\sqrt{n_{1\\cdot}n_{0\\cdot}n_{\\cdot 1}n_{\\cdot 0}}` on the
  uncorrected table (NaN when a margin is 0), with the Fisher-z approximate interval
  :math:`\\tanh(\\operatorname{atanh}\\phi \\pm z/\\sqrt{n-3})`;
* the chi-square test of independence without continuity correction (:math:`\\chi^2 = n\\phi^2`, 1 d.f.) and
  Benjamini-Hochberg q-values over all pairs.

`expected` is the model's expected co-occurrence count :math:`\\sum_i p_{ia}p_{ib}` (soft, no threshold).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["ComorbidityResult", "comorbidity_analysis", "pair_statistics"]

_SOURCES = ("observed", "predicted")
_BY = ("phi", "log_odds_ratio", "q_value", "n_both")


def pair_statistics(n11, n10, n01, n00, confidence: float = 0.95, correction: str | None = "haldane") -> dict:
    """Odds ratio (Woolf CI), phi (Fisher-z CI), chi-square p-value for arrays of 2x2 tables.

    Args:
        n11, n10, n01, n00 (array-like, same shape): cell counts (see the module docstring).
        confidence (`float`, defaults to 0.95): two-sided level of the intervals.
        correction (`str` or `None`, defaults to `"haldane"`): `"haldane"` adds 0.5 to every cell of tables with a
            zero cell (OR and its CI only), `"always"` to every table, `None` never.

    Returns:
        `dict` of arrays: `odds_ratio`, `or_ci_low`, `or_ci_high`, `log_odds_ratio`, `phi`, `phi_ci_low`,
        `phi_ci_high`, `p_value`.
    """
    from scipy.stats import chi2, norm

    if correction not in ("haldane", "always", None):
        raise ValueError(f"correction must be 'haldane', 'always' or None, got {correction!r}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    a, b, c, d = (np.asarray(x, dtype=np.float64) for x in (n11, n10, n01, n00))
    z = norm.ppf(0.5 + confidence / 2)
    if correction is None:
        add = np.zeros_like(a)
    elif correction == "always":
        add = np.full_like(a, 0.5)
    else:
        add = np.where((a == 0) | (b == 0) | (c == 0) | (d == 0), 0.5, 0.0)
    ac, bc, cc, dc = a + add, b + add, c + add, d + add
    with np.errstate(divide="ignore", invalid="ignore"):
        log_or = np.log(ac) + np.log(dc) - np.log(bc) - np.log(cc)
        se = np.sqrt(1 / ac + 1 / bc + 1 / cc + 1 / dc)
        n = a + b + c + d
        margins = (a + b) * (c + d) * (a + c) * (b + d)
        phi = np.where(margins > 0, (a * d - b * c) / np.sqrt(np.where(margins > 0, margins, 1.0)), np.nan)
        zphi = np.arctanh(np.clip(phi, -1 + 1e-12, 1 - 1e-12))
        half = np.where(n > 3, z / np.sqrt(np.maximum(n - 3, 1e-12)), np.nan)
        stat = n * phi**2
        out = {
            "odds_ratio": np.exp(log_or),
            "or_ci_low": np.exp(log_or - z * se),
            "or_ci_high": np.exp(log_or + z * se),
            "log_odds_ratio": log_or,
            "phi": phi,
            "phi_ci_low": np.tanh(zphi - half),
            "phi_ci_high": np.tanh(zphi + half),
            "p_value": np.where(np.isfinite(stat), chi2.sf(stat, 1), np.nan),
        }
    return out


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values over the finite entries (NaN stays NaN)."""
    from scipy.stats import false_discovery_control

    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = false_discovery_control(p[ok], method="bh")
    return q


@dataclass
class ComorbidityResult:
    """Co-occurrence counts of a cohort and the per-pair statistics built from them.

    Attributes:
        names (`list[str]`): condition names, in column order.
        n_people (`int`): cohort size.
        known_pairs (`np.ndarray` `(K, K)`): people with both labels known (all people when there are no labels).
        observed (`np.ndarray` `(K, K)` or `None`): :math:`n_{11}` from the labels (diagonal = cases of each
            condition); `None` when no labels were given.
        predicted (`np.ndarray` `(K, K)`): :math:`n_{11}` from the thresholded predictions, over the same people.
        expected (`np.ndarray` `(K, K)`): :math:`\\sum_i p_{ia} p_{ib}` over the same people (diagonal: :math:`\\sum_i
            p_{ia}`).
        thresholds (`np.ndarray` `(K,)`): probability thresholds used for `predicted`.
        confidence, correction: as given to `comorbidity_analysis`.
    """

    names: list
    n_people: int
    known_pairs: np.ndarray
    observed: np.ndarray | None
    predicted: np.ndarray
    expected: np.ndarray
    thresholds: np.ndarray
    confidence: float = 0.95
    correction: str | None = "haldane"
    _singles: dict = field(default_factory=dict, repr=False)  # source -> (K, K) count of "a present" among known pairs
    _table: pd.DataFrame | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ tables
    def pair_table(self) -> pd.DataFrame:
        """One row per pair `a < b` with at least one person where both are known: counts, prevalences, and for
        each source (`observed_*` when labels were given, `predicted_*`) the 2x2 cells, odds ratio with CI, phi
        with CI, p-value and BH q-value, plus `expected_both`."""
        if self._table is not None:
            return self._table
        k = len(self.names)
        ia, ib = np.triu_indices(k, 1)
        n = self.known_pairs[ia, ib]
        keep = n > 0
        ia, ib, n = ia[keep], ib[keep], n[keep]
        cols = {
            "condition_a": np.asarray(self.names, dtype=object)[ia],
            "condition_b": np.asarray(self.names, dtype=object)[ib],
            "n": n.astype(np.int64),
        }
        for source in _SOURCES:
            both = self.observed if source == "observed" else self.predicted
            if both is None:
                continue
            single = self._singles[source]
            n11 = both[ia, ib]
            n10 = single[ia, ib] - n11  # a present, b absent
            n01 = single[ib, ia] - n11
            n00 = n - n11 - n10 - n01
            stats = pair_statistics(n11, n10, n01, n00, self.confidence, self.correction)
            cols[f"{source}_prevalence_a"] = (n11 + n10) / n
            cols[f"{source}_prevalence_b"] = (n11 + n01) / n
            for name, value in (("n_both", n11), ("n_a_only", n10), ("n_b_only", n01), ("n_neither", n00)):
                cols[f"{source}_{name}"] = value.astype(np.int64)
            for name, value in stats.items():
                cols[f"{source}_{name}"] = value
            cols[f"{source}_q_value"] = _bh(stats["p_value"])
        cols["expected_both"] = self.expected[ia, ib]
        self._table = pd.DataFrame(cols)
        return self._table

    def strongest_pairs(self, n: int = 20, by: str = "phi", source: str = "observed", min_count: int = 5,
                        positive_only: bool = False) -> pd.DataFrame:
        """The `n` strongest pairs of one source.

        Args:
            n: number of rows.
            by: `"phi"` (largest :math:`|\\phi|`), `"log_odds_ratio"` (largest :math:`|\\log OR|`), `"q_value"`
                (smallest) or `"n_both"` (most frequent co-occurrence).
            source: `"observed"` or `"predicted"`.
            min_count: keep pairs with at least this many people having both (in that source).
            positive_only: keep positive associations only (:math:`\\phi > 0`).
        """
        if source not in _SOURCES:
            raise ValueError(f"source must be one of {_SOURCES}, got {source!r}.")
        if by not in _BY:
            raise ValueError(f"by must be one of {_BY}, got {by!r}.")
        if source == "observed" and self.observed is None:
            raise ValueError("No labels were given, so there are no observed co-occurrences; use source='predicted'.")
        table = self.pair_table()
        table = table[(table[f"{source}_n_both"] >= min_count) & np.isfinite(table[f"{source}_phi"])]
        if positive_only:
            table = table[table[f"{source}_phi"] > 0]
        col = f"{source}_{by}"
        key = table[col] if by in ("q_value", "n_both") else table[col].abs()
        ascending = by == "q_value"
        if by == "n_both":
            ascending = False
        order = key.sort_values(ascending=ascending, kind="stable").index
        return table.loc[order].head(n).reset_index(drop=True)

    # ------------------------------------------------------------------ export
    def to_csv(self, path, n: int | None = 50, by: str = "phi", source: str = "observed", min_count: int = 5) -> str:
        """Write the strongest pairs (`n=None`: every pair of `pair_table()`) as CSV; returns the path."""
        table = self.pair_table() if n is None else self.strongest_pairs(n, by=by, source=source, min_count=min_count)
        path = os.fspath(path)
        table.to_csv(path, index=False)
        return path

    def cooccurrence_frame(self, source: str = "observed") -> pd.DataFrame:
        """The `(K, K)` co-occurrence count matrix of a source (`observed`, `predicted` or `expected`) as a labelled
        DataFrame."""
        matrix = {"observed": self.observed, "predicted": self.predicted, "expected": self.expected}.get(source)
        if matrix is None:
            raise ValueError(f"No {source!r} matrix (sources: observed with labels, predicted, expected).")
        return pd.DataFrame(matrix, index=self.names, columns=self.names)

    def plot_network(self, path, n: int = 30, by: str = "phi", min_count: int = 5, title: str | None = None) -> str:
        """Network plot (PNG) of the `n` strongest pairs: one panel per source (observed, predicted), same circular
        layout. Nodes are the conditions in those pairs (area ~ prevalence); edge width ~ :math:`|\\phi|`, red =
        positive, blue = negative association. Uses matplotlib's Agg backend; returns the path."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        sources = [s for s in _SOURCES if (self.observed is not None or s == "predicted")]
        tops = {s: self.strongest_pairs(n, by=by, source=s, min_count=min_count) for s in sources}
        nodes = sorted({c for t in tops.values() for c in (*t["condition_a"], *t["condition_b"])}, key=self.names.index)
        fig = Figure(figsize=(6.5 * len(sources), 6.5))
        FigureCanvasAgg(fig)  # Agg without touching pyplot's global backend
        angle = {c: 2 * np.pi * i / max(len(nodes), 1) for i, c in enumerate(nodes)}
        pos = {c: (np.cos(a), np.sin(a)) for c, a in angle.items()}
        diag = {s: np.diag(self.observed if s == "observed" else self.predicted) for s in sources}
        for k, source in enumerate(sources):
            ax = fig.add_subplot(1, len(sources), k + 1)
            top = tops[source]
            for _, row in top.iterrows():
                (x0, y0), (x1, y1) = pos[row["condition_a"]], pos[row["condition_b"]]
                phi = row[f"{source}_phi"]
                ax.plot([x0, x1], [y0, y1], color="tab:red" if phi > 0 else "tab:blue",
                        linewidth=0.5 + 8 * abs(phi), alpha=0.7, zorder=1)
            if nodes:
                counts = np.array([diag[source][self.names.index(c)] for c in nodes], dtype=float)
                sizes = 40 + 600 * counts / max(counts.max(), 1.0)
                xy = np.array([pos[c] for c in nodes])
                ax.scatter(xy[:, 0], xy[:, 1], s=sizes, color="0.45", edgecolor="white", zorder=2)
                for c in nodes:
                    x, y = pos[c]
                    ax.annotate(c, (x * 1.22, y * 1.22), ha="center", va="center", fontsize=7)
            ax.set_title(f"{source} ({len(top)} strongest pairs by {by})", fontsize=10)
            ax.set_xlim(-1.45, 1.45)
            ax.set_ylim(-1.45, 1.45)
            ax.set_aspect("equal")
            ax.axis("off")
        fig.suptitle(title or f"Comorbidity network, {self.n_people} people")
        fig.text(0.5, 0.02, "edge width ~ |phi|; red = positive, blue = negative association; node area ~ cases",
                 ha="center", fontsize=8)
        path = os.fspath(path)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        return path

    def save(self, out_dir, n: int = 50, by: str = "phi", min_count: int = 5) -> dict:
        """Write `comorbidity_pairs.csv` (strongest pairs of the observed source, or predicted without labels),
        `comorbidity_network.png` and the co-occurrence matrices (`cooccurrence_<source>.csv`) into `out_dir`."""
        os.makedirs(out_dir, exist_ok=True)
        source = "observed" if self.observed is not None else "predicted"
        out = {
            "pairs": self.to_csv(os.path.join(out_dir, "comorbidity_pairs.csv"), n=n, by=by, source=source, min_count=min_count),
            "network": self.plot_network(os.path.join(out_dir, "comorbidity_network.png"), n=min(n, 30), by=by, min_count=min_count),
        }
        for s in ("observed", "predicted", "expected"):
            if s != "observed" or self.observed is not None:
                out[f"cooccurrence_{s}"] = os.path.join(out_dir, f"cooccurrence_{s}.csv")
                self.cooccurrence_frame(s).to_csv(out[f"cooccurrence_{s}"])
        return out


def comorbidity_analysis(
    probs,
    labels=None,
    names=None,
    label_mask=None,
    thresholds=None,
    confidence: float = 0.95,
    correction: str | None = "haldane",
) -> ComorbidityResult:
    """Pairwise co-occurrence of conditions over a cohort, observed vs predicted.

    Args:
        probs (array-like `(n_people, K)`): predicted probabilities in [0, 1] (e.g. `sigmoid(diagnosis_logits)`).
        labels (array-like `(n_people, K)`, *optional*): observed 0/1 labels; NaN = unknown. Without labels only the
            predicted (and expected) co-occurrence is computed.
        names (`list[str]` or `LabelSpace`, *optional*): condition names (a `LabelSpace` also supplies thresholds);
            defaults to `C0, C1, ...`.
        label_mask (array-like `(n_people, K)`, *optional*): 1 = label known. Pair statistics use the people with
            both labels known, for the observed and the predicted tables alike.
        thresholds (`float` or `(K,)`, *optional*): probability thresholds for "predicted present"; defaults to the
            label space's thresholds, else 0.5.
        confidence (`float`, defaults to 0.95): level of the confidence intervals.
        correction (`str` or `None`, defaults to `"haldane"`): zero-cell correction of the odds ratio (see
            `pair_statistics`).

    Returns:
        `ComorbidityResult`.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must be (n_people, n_conditions >= 2), got shape {p.shape}.")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("probs must be finite probabilities in [0, 1] (apply a sigmoid to logits first).")
    n_people, k = p.shape
    label_thresholds = None
    if names is None:
        names = [f"C{i}" for i in range(k)]
    elif hasattr(names, "conditions"):  # a LabelSpace
        label_thresholds = np.asarray(names.thresholds, dtype=np.float64)
        names = list(names.names)
    names = [str(x) for x in names]
    if len(names) != k or len(set(names)) != k:
        raise ValueError(f"names must be {k} unique strings (one per column of probs), got {len(names)} ({len(set(names))} unique).")
    if thresholds is None:
        thr = label_thresholds if label_thresholds is not None else np.full(k, 0.5)
    else:
        thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (k,)).copy()
    known = np.ones_like(p, dtype=bool)
    y = None
    if labels is not None:
        y = np.asarray(labels, dtype=np.float64)
        if y.shape != p.shape:
            raise ValueError(f"labels have shape {y.shape} but probs have {p.shape}.")
        known &= np.isfinite(y)
        if label_mask is not None:
            m = np.asarray(label_mask)
            if m.shape != p.shape:
                raise ValueError(f"label_mask has shape {m.shape} but probs have {p.shape}.")
            known &= m.astype(bool)
        bad = known & (y != 0) & (y != 1)
        if bad.any():
            raise ValueError(f"labels must be 0/1 (NaN = unknown); found {np.unique(y[bad])[:5]}.")
    elif label_mask is not None:
        raise ValueError("label_mask was given without labels.")

    # Counts by matrix products over the known entries (float32 is exact for counts below 2**24).
    dtype = np.float32 if n_people < 2**24 else np.float64
    mk = known.astype(dtype)
    pred = (p >= thr[None, :]).astype(dtype) * mk
    known_pairs = np.rint(mk.T @ mk).astype(np.int64)
    singles = {"predicted": np.rint(pred.T @ mk).astype(np.int64)}  # [a, b]: a present, both known
    observed = None
    if y is not None:
        obs = np.where(known, y, 0.0).astype(dtype)
        observed = np.rint(obs.T @ obs).astype(np.int64)
        singles["observed"] = np.rint(obs.T @ mk).astype(np.int64)
    predicted = np.rint(pred.T @ pred).astype(np.int64)
    pk = p * known
    expected = pk.T @ pk
    np.fill_diagonal(expected, pk.sum(0))
    return ComorbidityResult(
        names=names, n_people=n_people, known_pairs=known_pairs, observed=observed, predicted=predicted,
        expected=expected, thresholds=thr, confidence=confidence, correction=correction, _singles=singles,
    )
