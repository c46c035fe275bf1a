"""HTML pages from report contexts, with Jinja2 (already installed with torch) and autoescaping on.

Pages are self-contained: CSS inline, images as `data:` URLs, no script, and a Content-Security-Policy of
`default-src 'none'` so that a browser opening a page fetches nothing at all, even if a later template change
added a remote URL by mistake.
"""

from __future__ import annotations

import datetime as _dt
import functools
from importlib import resources

from .context import STAMP, STAMP_DETAIL


@functools.lru_cache(maxsize=1)
def _env():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("anyecg_hf.reporting", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True, default=True),
        trim_blocks=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


@functools.lru_cache(maxsize=1)
def report_css() -> str:
    """The report's stylesheet (inlined into every page; scoped under `.anyecg-report`)."""
    return resources.files("anyecg_hf.reporting").joinpath("templates/style.css").read_text(encoding="utf-8")


def tracing_alt(c: dict) -> str:
    """Alt text of the tracing: what a sighted reader gets from the image, in words."""
    sig = c["signal"]
    parts = [f"{sig['leads']}-lead ECG tracing of record {c['record_id']} on ECG paper: {sig['leads']} leads "
             f"({', '.join(sig['lead_names'])}), {sig['duration']:.1f} s at {sig['sampling_rate']:g} Hz"]
    if c["measurements"]:
        parts.append("measurements " + ", ".join(f"{m['name']} {m['text']}" for m in c["measurements"]))
    return "; ".join(parts) + "."


def risk_alt(c: dict) -> str:
    names = ", ".join(r["label"] for r in c["risks"][:5])
    return f"Risk curves of record {c['record_id']}: cumulative incidence over years after the ECG for {names}."


def render_report(context: dict, *, fragment: bool = False) -> str:
    """One report page from `report_context(...)`.

    Args:
        fragment: `True` gives only the `<main>` element with its styles (to embed in the web app), `False` a
            complete HTML document.
    """
    html = _env().get_template("report.html.j2").render(
        c=context, css=report_css(), fragment=fragment, tracing_alt=tracing_alt(context), risk_alt=risk_alt(context))
    if fragment:
        return f"<style>{report_css()}</style>\n{html}"
    return html


def render_index(entries: list[dict], model: dict, errors=(), generated: str | None = None) -> str:
    """The index page of a folder of reports.

    Args:
        entries: `[{"record_id", "href", "top": {"label", "score"} | None, "positive": [labels], "num_flags"}]`.
        model: `ModelInfo.to_dict()`.
        errors: `[{"file", "message"}]` for inputs that could not be read.
    """
    return _env().get_template("index.html.j2").render(
        entries=entries, model=model, errors=list(errors), css=report_css(), stamp=STAMP, stamp_detail=STAMP_DETAIL,
        generated=generated or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
