"""`ECGReporter`: ECG files -> profile + tracing + quality flags -> one self-contained HTML page per ECG, and an
index page for a folder. The command `anyecg report` and the web app both use it, so they show the same page.

```python
from anyecg_hf.reporting import ECGReporter

reporter = ECGReporter.from_pretrained("path/to/model")      # None = the converted public ECGFounder
result = reporter.report("examples/ecg/HR06000.hea")          # .html, .profile, .rows, .record
reporter.write_folder(["examples/ecg"], "report/")            # report/index.html + report/HR06000.html ...
```
"""

from __future__ import annotations

import base64
import io
import os
import re
from dataclasses import dataclass, field

from .context import ModelInfo, report_context
from .html import render_index, render_report


@dataclass
class ReportResult:
    """One ECG's report: the page (`html`, a full document; `fragment` for embedding), the profile and its table
    rows (`anyecg_hf.prediction.profile_rows` columns plus `precision`), and the record read."""

    record: object
    profile: dict
    rows: list
    context: dict
    html: str
    fragment: str = field(repr=False, default="")


def png_base64(fig) -> str:
    """Base64 of a matplotlib figure as PNG (at the figure's own size and dpi); closes the figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "ecg"


class ECGReporter:
    """Makes reports with one loaded model.

    Args:
        model, feature_extractor: as returned by `anyecg_hf.prediction.load_model_and_extractor`.
        info (`ModelInfo`): model id / revision / precision shown on each page.
        precision (`str`): `"fp32"` (default), `"bf16"`, `"fp16"` or `"auto"` (`anyecg_hf.runtime.precision`).
        top_k (`int`): conditions shown per page (plus any other positive one).
        dpi (`int`): resolution of the tracing (the default 110 gives a 1156 x 609 px image).
    """

    def __init__(self, model, feature_extractor, info: ModelInfo | None = None, *, precision: str = "fp32",
                 top_k: int = 10, dpi: int = 110):
        from ..pipelines.profiling import ECGProfilingPipeline
        from ..runtime.precision import precision_label, resolve_precision

        self.model, self.feature_extractor = model, feature_extractor
        self.dtype = resolve_precision(precision, model.device)
        self.info = info or ModelInfo.from_model(model, precision=precision_label(self.dtype))
        self.info.precision = precision_label(self.dtype)
        self.top_k, self.dpi = int(top_k), int(dpi)
        self.pipe = ECGProfilingPipeline(model=model, feature_extractor=feature_extractor, device=model.device)

    @classmethod
    def from_pretrained(cls, model=None, *, revision: str | None = None, device: str | None = None,
                        precision: str = "fp32", **kwargs) -> "ECGReporter":
        """Load `model` (folder, Hub id, ECGFounder `.pth`; `None` = the default model) and build a reporter."""
        from ..prediction import load_model_and_extractor
        from ..runtime.precision import precision_label, resolve_precision

        loaded, extractor = load_model_and_extractor(model, device=device or "cpu", revision=revision)
        label = precision_label(resolve_precision(precision, loaded.device))
        info = ModelInfo.from_model(loaded, model, revision=revision, precision=label)
        return cls(loaded, extractor, info, precision=precision, **kwargs)

    # ------------------------------------------------------------------------------------------------ one ECG
    def report(self, source, *, read_kwargs: dict | None = None) -> ReportResult:
        """Report on one ECG: a path (any format `read_ecg` reads) or an `ECGRecord`.

        Raises:
            ECGReadError / FileNotFoundError / ImportError: from `read_ecg`, with its message (file and problem).
        """
        from ..io import read_ecg
        from ..prediction import profile_rows
        from ..plotting import plot_ecg
        from ..risk_plots import NoRiskCurvesError, plot_risk_curves, risk_curves
        from ..processing import signal_quality
        from ..runtime.precision import autocast

        record = source if hasattr(source, "signal") else read_ecg(source, **(read_kwargs or {}))
        with autocast(self.dtype, self.model.device):
            profile = self.pipe(record, quality=True)
        flags = signal_quality(record.signal, record.sampling_rate, record.lead_names, record_id=record.record_id)
        positives = [d["label"] for d in profile["diagnoses"] if d["positive"]][:4]
        subtitle = (f"{record.num_leads} leads, {record.sampling_rate:g} Hz, {record.duration:.1f} s"
                    + (f"   model: {'; '.join(positives)}" if positives else ""))  # measurements: plot_ecg's header
        tracing = png_base64(plot_ecg(record, title=f"{record.record_id}  |  {self.info.model_id}",
                                      subtitle=subtitle, dpi=self.dpi))
        risk_png, risk_note = None, None
        if getattr(self.model, "risk_head", None) is not None:
            try:
                with autocast(self.dtype, self.model.device):
                    curves = risk_curves(self.model, self.feature_extractor, record)
                curves["record"] = record.record_id
                risk_png = png_base64(plot_risk_curves(curves, top_k=5, dpi=100))
            except NoRiskCurvesError as err:
                risk_note = str(err)
        else:
            risk_note = ("This model predicts current diagnoses only (no risk head), so there are no risk curves. "
                         "Risk heads come from fine-tuning on a cohort with follow-up.")
        context = report_context(record, profile, self.info, flags=flags, top_k=self.top_k, tracing_png=tracing,
                                 risk_png=risk_png, risk_note=risk_note)
        rows = [dict(r, precision=self.info.precision, model=self.info.model_id) for r in profile_rows(profile)]
        return ReportResult(record=record, profile=profile, rows=rows, context=context,
                            html=render_report(context), fragment=render_report(context, fragment=True))

    # ------------------------------------------------------------------------------------------------ folders
    def write_folder(self, paths, out, *, read_kwargs: dict | None = None, progress: bool = False) -> dict:
        """Write `out/<record>.html` for every ECG found under `paths` (files and folders) and `out/index.html`.

        Returns `{"pages": [paths written], "errors": [{"file", "message"}], "index": index path}`. Unreadable
        files do not stop the run: they are listed on the index page and in `errors`.
        """
        try:  # the archive engine's own input discovery (moved by the layout-v2 refactor)
            from ..archive.discovery import discover_inputs
        except ImportError:
            from ..archive.discovery import discover_inputs
        from ..io import ECGReadError

        os.makedirs(out, exist_ok=True)
        files = discover_inputs(list(paths))
        entries, errors, pages, used = [], [], [], set()
        for path in files:
            try:
                result = self.report(path, read_kwargs=read_kwargs)
            except (ECGReadError, OSError, ImportError, ValueError) as err:
                errors.append({"file": os.path.basename(str(path)), "message": str(err)})
                continue
            name = _safe_name(result.record.record_id)
            while name in used:
                name += "_"
            used.add(name)
            page = os.path.join(out, f"{name}.html")
            _write_text(page, result.html)
            pages.append(page)
            diags = result.profile["diagnoses"]
            entries.append({"record_id": result.record.record_id, "href": f"{name}.html",
                            "top": diags[0] if diags else None,
                            "positive": [d["label"] for d in diags if d["positive"]],
                            "num_flags": result.context["quality"]["num_flags"]})
            if progress:
                print(f"wrote {page}")
        index = os.path.join(out, "index.html")
        _write_text(index, render_index(entries, self.info.to_dict(), errors))
        return {"pages": pages, "errors": errors, "index": index}


def _write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
