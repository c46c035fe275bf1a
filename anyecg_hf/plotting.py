"""ECG plots on ECG paper (matplotlib, Agg backend): the standard 12-lead layout with an optional attribution
overlay (risk curves are in `risk_plots.py`).

Paper conventions: 25 mm/s and 10 mm/mV, a 1 mm minor grid (0.04 s, 0.1 mV) and a 5 mm major grid (0.2 s,
0.5 mV), a 1 mV / 0.2 s calibration pulse at the start of each row. The figure is drawn in millimetres at true
scale, so a plot printed at 100 % has the clinical dimensions, and its pixel size is known in advance
(`ecg_plot_size`).

Layouts:
* `"3x4"` (any record that has standard limb or chest leads): 3 rows x 4 columns of 2.5 s
  (I, aVR, V1, V4 / II, aVL, V2, V5 / III, aVF, V3, V6), each column showing its own 2.5 s of the same 10 s, plus a
  10 s rhythm strip of lead II. Missing leads are left blank and labelled "missing".
* `"stack"` (other lead sets, 1-lead records): one full-width 10 s row per lead.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["NoRiskCurvesError", "ecg_plot_size", "plot_ecg", "plot_risk_curves", "risk_curves", "save_figure"]

MM_PER_S = 25.0
MM_PER_MV = 10.0
DURATION_S = 10.0
LAYOUT_3X4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
_LEFT_MM, _RIGHT_MM, _HEADER_MM, _FOOTER_MM = 12.0, 5.0, 14.0, 7.0
_ROW_MM = {"3x4": 30.0, "stack": 25.0}
_GRID_MINOR = "#f6c4c4"
_GRID_MAJOR = "#e58a8a"


def _agg():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _layout_for(lead_names, layout: str) -> str:
    if layout != "auto":
        if layout not in _ROW_MM:
            raise ValueError(f"layout must be 'auto', '3x4' or 'stack', got {layout!r}.")
        return layout
    standard = {n for row in LAYOUT_3X4 for n in row}
    return "3x4" if len(standard & set(lead_names)) >= 6 else "stack"


def _paper_mm(layout: str, n_leads: int) -> tuple[float, float]:
    rows = 4 if layout == "3x4" else max(1, n_leads)
    width = _LEFT_MM + DURATION_S * MM_PER_S + _RIGHT_MM
    return width, _HEADER_MM + rows * _ROW_MM[layout] + _FOOTER_MM


def ecg_plot_size(dpi: int = 150, layout: str = "3x4", n_leads: int = 12) -> tuple[int, int]:
    """Pixel size `(width, height)` of the PNG `plot_ecg` writes at `dpi`: the paper size in mm (267 x 141 mm for
    the 3x4 layout; 267 x (21 + 25 n) mm for `n` stacked leads) times `dpi / 25.4`, rounded."""
    w, h = _paper_mm(layout, n_leads)
    return round(w * dpi / 25.4), round(h * dpi / 25.4)


def _new_figure(width_mm: float, height_mm: float, dpi: int):
    plt = _agg()
    # exact pixel size: matplotlib truncates figsize * dpi, so aim a hair above the rounded target
    w_px, h_px = round(width_mm * dpi / 25.4), round(height_mm * dpi / 25.4)
    fig = plt.figure(figsize=((w_px + 0.25) / dpi, (h_px + 0.25) / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width_mm)
    ax.set_ylim(0, height_mm)
    ax.set_axis_off()
    return fig, ax


def _draw_grid(ax, x0, x1, y0, y1):
    from matplotlib.collections import LineCollection

    for step, color, lw in ((1.0, _GRID_MINOR, 0.35), (5.0, _GRID_MAJOR, 0.7)):
        xs = np.arange(x0, x1 + 1e-6, step)
        ys = np.arange(y0, y1 + 1e-6, step)
        segs = [((x, y0), (x, y1)) for x in xs] + [((x0, y), (x1, y)) for y in ys]
        ax.add_collection(LineCollection(segs, colors=color, linewidths=lw, zorder=0))


def _display_signal(signal: np.ndarray, fs: float, filtered: bool) -> np.ndarray:
    """Signal as drawn: optional 0.5 Hz zero-phase high-pass (removes baseline wander and offsets so each trace
    stays on its row), NaN gaps kept as gaps.

    The edges are mirrored (even reflection, 3 s) before filtering. scipy's default odd extension hangs the padding
    on the first sample's value, so a record that starts on a spike or a step showed a baseline swing of up to
    ~1 mV over its first second (CinC record JS20007); a mirror does not depend on one sample."""
    x = np.asarray(signal, dtype=np.float64)
    if not filtered or x.shape[-1] < 30:
        return x - np.nanmedian(x, axis=-1, keepdims=True)
    from scipy import signal as sps

    nan = ~np.isfinite(x)
    filled = np.where(nan, 0.0, x - np.nanmedian(x, axis=-1, keepdims=True))
    sos = sps.butter(2, 0.5, "highpass", fs=fs, output="sos")
    pad = min(x.shape[-1] - 1, int(3 * fs))
    mirrored = np.pad(filled, ((0, 0), (pad, pad)), mode="reflect")
    y = sps.sosfiltfilt(sos, mirrored, axis=-1, padlen=0)[:, pad : pad + x.shape[-1]]
    y[nan] = np.nan
    return y


def _attribution_on_grid(attr: np.ndarray, attr_fs: float, t: np.ndarray, smooth_s: float = 0.04) -> np.ndarray:
    """Attribution of one lead (model time grid) smoothed over `smooth_s` and sampled at times `t` (seconds)."""
    a = np.asarray(attr, dtype=np.float64)
    k = max(1, int(round(smooth_s * attr_fs)))
    if k > 1:
        a = np.convolve(a, np.ones(k) / k, mode="same")
    ta = np.arange(a.size) / attr_fs
    return np.interp(t, ta, a, left=0.0, right=0.0)


def plot_ecg(
    record,
    sampling_rate: float | None = None,
    lead_names=None,
    *,
    attributions: dict | None = None,
    title: str | None = None,
    subtitle: str | None = None,
    layout: str = "auto",
    start: float = 0.0,
    filtered: bool = True,
    measurements: dict | None = None,
    dpi: int = 150,
    out=None,
):
    """Draw an ECG on ECG paper.

    Args:
        record: an `ECGRecord`, or a `(leads, samples)` array in mV with `sampling_rate` and `lead_names`.
        sampling_rate (`float`), lead_names (`list[str]`): for array input.
        attributions (`dict`, *optional*): per-lead attributions to overlay, as returned by
            `anyecg_hf.attribution.explain_record` (`attributions` `(leads, samples)`, `lead_names`, `sampling_rate`,
            `lead_importance`, `label`, `method`). Drawn as a band behind each trace: red where the signal pushes the
            condition's score up, blue where it pushes it down, opacity proportional to the magnitude (smoothed
            over 40 ms, normalised by the largest value over all leads); each lead label shows its share of the
            total absolute attribution. Attribution time 0 is the start of the model's window (the record's start).
        title, subtitle (`str`, *optional*): header lines (default: the record id, rate and duration). A subtitle
            too long for one line is wrapped onto two, then cut with an ellipsis: it never runs off the page.
        layout (`str`): `"auto"` (3x4 + rhythm strip when standard leads are present, else `"stack"`), `"3x4"` or
            `"stack"`.
        start (`float`): first second shown (10 s are shown).
        filtered (`bool`, defaults to `True`): 0.5 Hz high-pass for display (baseline wander; edges mirrored, so
            the first second has no filter transient); the model's own preprocessing is unaffected.
        measurements (`dict`, *optional*): the cart's measurements (`heart_rate`, `pr_ms`, `qrs_ms`, `qt_ms`,
            `qtc_ms`, `p_axis`, `qrs_axis`, `t_axis`), shown at the right of the title line; default: the record's
            `metadata["measurements"]`. `{}` shows none.
        dpi (`int`, defaults to 150): resolution; the PNG is `ecg_plot_size(dpi, layout, n_leads)` pixels.
        out (path, *optional*): write the figure there (PNG, SVG or PDF by extension) and close it.

    Returns:
        The matplotlib `Figure` (closed and `None` when `out` is given).
    """
    if hasattr(record, "signal"):
        signal, fs, names = record.signal, float(record.sampling_rate), list(record.lead_names)
        rid = record.record_id if getattr(record, "source", None) or "record_id" in getattr(record, "metadata", {}) else None
    else:
        if sampling_rate is None or lead_names is None:
            raise ValueError("plot_ecg needs sampling_rate= and lead_names= for an array input.")
        signal, fs, names, rid = np.asarray(record, dtype=np.float64), float(sampling_rate), list(lead_names), None
        if signal.ndim != 2 or signal.shape[0] != len(names):
            raise ValueError(f"signal shape {signal.shape} does not match {len(names)} lead names (expected (leads, samples)).")
    from .leads import canonical_lead_name

    names = [canonical_lead_name(n) for n in names]
    layout = _layout_for(names, layout)
    i0 = max(0, int(round(start * fs)))
    seg = signal[:, i0 : i0 + int(round(DURATION_S * fs))]
    if seg.shape[1] == 0:
        raise ValueError(f"start={start} s is beyond the end of the record ({signal.shape[1] / fs:.2f} s).")
    # filter with up to 3 s of the record's own signal on each side of the window shown (mirror only past its ends)
    c0, c1 = max(0, i0 - int(3 * fs)), min(signal.shape[1], i0 + seg.shape[1] + int(3 * fs))
    y = _display_signal(signal[:, c0:c1], fs, filtered)[:, i0 - c0 : i0 - c0 + seg.shape[1]]
    width_mm, height_mm = _paper_mm(layout, len(names))
    fig, ax = _new_figure(width_mm, height_mm, dpi)
    grid_top = height_mm - _HEADER_MM
    _draw_grid(ax, 0, width_mm, _FOOTER_MM, grid_top)
    row_h = _ROW_MM[layout]

    attr = None
    if attributions is not None:
        a_names = list(attributions["lead_names"])
        a_vals = np.asarray(attributions["attributions"], dtype=np.float64)
        a_fs = float(attributions["sampling_rate"])
        smoothed = {n: _attribution_on_grid(a_vals[j], a_fs, np.arange(a_vals.shape[1]) / a_fs) for j, n in enumerate(a_names)}
        scale = max((np.abs(v).max() for v in smoothed.values()), default=0.0) or 1.0
        share = dict(zip(a_names, np.asarray(attributions.get("lead_importance", np.zeros(len(a_names))))))
        attr = {"values": a_vals, "names": a_names, "fs": a_fs, "scale": scale, "share": share,
                "offset": i0 / fs}

    def draw(lead, t0, t1, x_mm0, baseline_mm, label=True):
        if lead not in names:
            ax.text(x_mm0 + 1.5, baseline_mm + 0.32 * row_h, f"{lead} (missing)", fontsize=6.5, color="0.45", va="bottom")
            return
        j = names.index(lead)
        a, b = int(round(t0 * fs)), min(seg.shape[1], int(round(t1 * fs)))
        if b <= a:
            return
        t = np.arange(a, b) / fs
        xs = x_mm0 + (t - t0) * MM_PER_S
        v = y[j, a:b]
        if attr is not None and lead in attr["names"]:
            k = attr["names"].index(lead)
            vals = _attribution_on_grid(attr["values"][k], attr["fs"], t + attr["offset"]) / attr["scale"]
            rgba = np.zeros((1, len(vals), 4))
            rgba[0, :, 0] = np.where(vals > 0, 0.85, 0.1)
            rgba[0, :, 1] = 0.1
            rgba[0, :, 2] = np.where(vals > 0, 0.1, 0.85)
            rgba[0, :, 3] = np.clip(np.abs(vals), 0, 1) * 0.75
            half = 0.42 * row_h
            ax.imshow(rgba, extent=(xs[0], xs[-1], baseline_mm - half, baseline_mm + half), aspect="auto",
                      interpolation="bilinear", zorder=1)
        ax.plot(xs, baseline_mm + v * MM_PER_MV, color="black", lw=0.6, zorder=3, solid_joinstyle="round")
        if label:
            text = lead
            if attr is not None and lead in attr["share"]:
                text += f"  {100 * attr['share'][lead]:.0f}%"
            ax.text(x_mm0 + 1.0, baseline_mm + 0.36 * row_h, text, fontsize=7, fontweight="bold", va="bottom", zorder=4)

    def calibration(baseline_mm):
        x = _LEFT_MM - 9.0
        ax.plot([x, x + 2, x + 2, x + 7, x + 7, x + 9], [baseline_mm, baseline_mm, baseline_mm + MM_PER_MV,
                baseline_mm + MM_PER_MV, baseline_mm, baseline_mm], color="black", lw=0.6, zorder=3)

    col_s = DURATION_S / 4
    if layout == "3x4":
        for r, row in enumerate(LAYOUT_3X4):
            base = grid_top - (r + 0.5) * row_h
            calibration(base)
            for c, lead in enumerate(row):
                x0 = _LEFT_MM + c * col_s * MM_PER_S
                draw(lead, c * col_s, (c + 1) * col_s, x0, base)
                if c:
                    ax.plot([x0, x0], [base - 2.5, base + 2.5], color="black", lw=0.6, zorder=3)
        base = grid_top - 3.5 * row_h
        calibration(base)
        draw(RHYTHM_LEAD, 0.0, DURATION_S, _LEFT_MM, base)
    else:
        for r, lead in enumerate(names):
            base = grid_top - (r + 0.5) * row_h
            calibration(base)
            draw(lead, 0.0, DURATION_S, _LEFT_MM, base)

    duration = signal.shape[1] / fs
    head = title or (f"{rid}" if rid else "ECG")
    sub = subtitle or f"{len(names)} leads, {fs:g} Hz, {duration:.1f} s" + (f", shown from {start:g} s" if start else "")
    if measurements is None and hasattr(record, "metadata"):
        measurements = (record.metadata or {}).get("measurements")
    _draw_header(fig, ax, width_mm, height_mm, head, sub, _measurement_line(measurements))
    foot = f"{MM_PER_S:g} mm/s   {MM_PER_MV:g} mm/mV" + ("   display filter 0.5 Hz high-pass" if filtered else "")
    if attr is not None:
        foot += (f"   overlay: {attributions.get('method', 'attribution').replace('_', ' ')} for "
                 f"{attributions.get('label', '?')} (red raises, blue lowers the score)")
    ax.text(2.0, 2.0, foot, fontsize=6.5, va="bottom", color="0.2")
    if out is not None:
        save_figure(fig, out)
        return None
    return fig


def _measurement_line(measurements) -> str:
    if not measurements:
        return ""
    from .reporting.context import measurement_header

    return measurement_header(measurements)


def _fits(fig, artist, width_px: float) -> bool:
    return artist.get_window_extent(fig.canvas.get_renderer()).width <= width_px


def _draw_header(fig, ax, width_mm, height_mm, head, sub, meas) -> None:
    """Title (left) and measurements (right) on the first line, the subtitle below on one or two lines; text is
    measured with the renderer and wrapped or cut so that nothing leaves the page or overlaps."""
    import textwrap

    px_per_mm = fig.dpi / 25.4
    usable = (width_mm - 4.0) * px_per_mm
    right = None
    if meas:
        right = ax.text(width_mm - 2.0, height_mm - 2.0, meas, fontsize=8, fontweight="bold", va="top", ha="right")
        if not _fits(fig, right, 0.7 * usable):
            right.set_fontsize(6.5)
    room = usable - (right.get_window_extent(fig.canvas.get_renderer()).width + 4 * px_per_mm if right else 0)
    left = ax.text(2.0, height_mm - 2.0, head, fontsize=9, fontweight="bold", va="top")
    text = head
    while not _fits(fig, left, room) and len(text) > 4:
        text = text[: int(len(text) * 0.9)]
        left.set_text(text.rstrip() + "\u2026")
    line = ax.text(2.0, height_mm - 7.0, sub, fontsize=7, va="top", color="0.2")
    if _fits(fig, line, usable):
        return
    line.set_fontsize(6.5)
    line.set_linespacing(1.15)
    width = next(w for w in range(max(1, len(sub) // 2), len(sub) + 1) if len(textwrap.wrap(sub, w)) <= 2)
    lines = textwrap.wrap(sub, width)
    while True:
        line.set_text("\n".join(lines))
        if _fits(fig, line, usable):
            return
        k = max(range(len(lines)), key=lambda i: len(lines[i]))  # cut the longer line, with an ellipsis
        lines[k] = lines[k].rstrip("\u2026")[: int(len(lines[k]) * 0.92)].rstrip() + "\u2026"


def save_figure(fig, out) -> str:
    """Save `fig` to `out` (format from the extension) at the figure's own dpi and size, and close it."""
    plt = _agg()
    out = os.fspath(out)
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(out, dpi=fig.dpi)
    plt.close(fig)
    return out


