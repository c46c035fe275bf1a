"""What people look at rather than read: a self-contained HTML report per ECG (`report`), FHIR R4 bundles for
hospital systems (`fhir`), and the Gradio web app (`app`, extra `[app]`).

Nothing here reaches the network: report pages inline their images (base64 PNG) and CSS, and reference no URL.
Submodules are imported on use, so `import anyecg_hf.reporting` is cheap.
"""

from __future__ import annotations

from ..lazy import lazy_getattr

__all__ = ["ECGReporter", "ModelInfo", "fhir_bundle", "render_index", "render_report", "write_fhir_bundle"]

_LAZY = {"ECGReporter": ".report", "ModelInfo": ".context", "render_report": ".html", "render_index": ".html",
         "fhir_bundle": ".fhir", "write_fhir_bundle": ".fhir"}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
