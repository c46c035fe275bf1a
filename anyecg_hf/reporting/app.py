"""The web app (Gradio, extra `[app]`): upload an ECG file in any supported format, or pick a bundled sample, and
see its report; download the row set (CSV) and the report page.

The same `build_app` runs locally (`anyecg app --model M`, on 127.0.0.1) and as a Hugging Face Space (the
repository's `app.py`, model from the `ANYECG_MODEL` environment variable). It reaches no network: analytics are
off and the theme uses the system fonts (Gradio's default theme loads web fonts).

Uploads: WFDB needs its header and signal file together, so several files can be uploaded at once (they are put
side by side under their own names). Every uploaded file is deleted once its request is answered, whatever
happened; the downloads are written to Gradio's cache, which the app clears of files older than an hour. A file
that cannot be read gets the reader's message (file and problem), never a stack trace.
"""

from __future__ import annotations

import csv
import html
import os
import shutil
import tempfile
from pathlib import Path

from .context import STAMP, STAMP_DETAIL

MODEL_ENV = "ANYECG_MODEL"
SAMPLES_ENV = "ANYECG_SAMPLES"


def sample_files(folder=None) -> dict:
    """`{name: path}` of the bundled sample ECGs: `$ANYECG_SAMPLES`, else the repository's `examples/ecg` (present
    in a clone and in a Space; a wheel ships no samples, and then the list is empty)."""
    folder = folder or os.environ.get(SAMPLES_ENV) or Path(__file__).resolve().parents[2] / "examples" / "ecg"
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    try:  # the archive engine's walk: the readers' own notion of an ECG file, one entry per WFDB record
        from ..archive.discovery import walk_directory
    except ImportError:
        from ..archive.discovery import walk_directory

    names = {}
    for p in walk_directory(folder):
        if os.path.dirname(p) == str(folder.resolve()):
            names[Path(p).stem if p.lower().endswith(".hea") else os.path.basename(p)] = p
    return names


def _primary(paths: list[str]) -> str:
    """The file to read among those uploaded together: a WFDB header if there is one, else the first."""
    heads = [p for p in paths if p.lower().endswith(".hea")]
    return heads[0] if heads else paths[0]


def _error_html(message: str) -> str:
    return (f'<div class="anyecg-error" role="alert" id="anyecg-error"><h2>The file could not be analysed</h2>'
            f"<p>{html.escape(message)}</p></div>")


def _upload_paths(files) -> list[str]:
    if files is None:
        return []
    files = files if isinstance(files, (list, tuple)) else [files]
    return [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]


def _delete_uploads(paths) -> None:
    """Remove uploaded files and the per-upload folders Gradio made for them (when they end up empty)."""
    for p in paths:
        try:
            os.remove(p)
        except OSError:
            pass
        try:
            os.rmdir(os.path.dirname(p))
        except OSError:
            pass


def analyse(reporter, files, sample: str | None, samples: dict, out_root: str | None = None):
    """The app's handler, without Gradio: `(report HTML fragment, [downloads])`.

    Uploaded `files` win over `sample`. Uploaded files are deleted before returning, in every case.
    """
    uploads = _upload_paths(files)
    work = tempfile.mkdtemp(prefix="anyecg-upload-")
    try:
        if uploads:
            local = []
            for p in uploads:
                target = os.path.join(work, os.path.basename(p))
                shutil.copyfile(p, target)
                local.append(target)
            path, shown = _primary(local), os.path.basename(_primary(local))
        elif sample:
            if sample not in samples:
                return _error_html(f"unknown sample {sample!r}"), []
            path, shown = samples[sample], os.path.basename(samples[sample])
        else:
            return _error_html("Upload an ECG file (WFDB: the .hea with its .mat/.dat) or pick a sample."), []
        try:
            result = reporter.report(path)
        except FileNotFoundError as err:
            return _error_html(f"{shown}: a file is missing ({os.path.basename(str(err.filename or ''))}); WFDB "
                               "records need the .hea header and its signal file uploaded together."), []
        except Exception as err:  # noqa: BLE001 - the page shows the reader's message, never a traceback
            message = str(err).replace(work + os.sep, "").replace(work, "")
            return _error_html(f"{shown}: {message}" if shown not in message else message), []
        downloads = _write_downloads(result, out_root)
        return result.fragment, downloads
    finally:
        shutil.rmtree(work, ignore_errors=True)
        _delete_uploads(uploads)


def _write_downloads(result, out_root) -> list[str]:
    folder = tempfile.mkdtemp(prefix="anyecg-result-", dir=out_root)
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in result.record.record_id) or "ecg"
    rows_path = os.path.join(folder, f"{name}_profile.csv")
    with open(rows_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(result.rows[0]))
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in result.rows)
    page_path = os.path.join(folder, f"{name}_report.html")
    with open(page_path, "w", encoding="utf-8") as f:
        f.write(result.html)
    return [rows_path, page_path]


def build_app(model=None, *, revision: str | None = None, precision: str = "fp32", reporter=None,
              samples_dir=None):
    """The Gradio `Blocks` app. `model`: folder / Hub id / `.pth` (default `$ANYECG_MODEL`, else the converted
    public ECGFounder); or pass a ready `reporter` (`ECGReporter`)."""
    import gradio as gr

    from .report import ECGReporter

    if reporter is None:
        reporter = ECGReporter.from_pretrained(model or os.environ.get(MODEL_ENV) or None, revision=revision,
                                               precision=precision)
    samples = sample_files(samples_dir)
    out_root = None
    try:  # downloads inside Gradio's cache: served without a copy, cleared by delete_cache
        from gradio.utils import get_upload_folder

        out_root = get_upload_folder()
        os.makedirs(out_root, exist_ok=True)
    except (ImportError, OSError):
        out_root = None
    info = reporter.info
    with gr.Blocks(title="AnyECG report", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.HTML(f'<div class="anyecg-stamp" role="note"><strong>{html.escape(STAMP)}</strong> '
                f"{html.escape(STAMP_DETAIL)}</div>")
        gr.Markdown(f"# AnyECG: ECG report\nModel **{info.model_id}** ({info.revision or 'revision not recorded'}, "
                    f"{info.precision}). Upload an ECG file (WFDB `.hea` + `.mat`/`.dat` together, GE MUSE, Philips "
                    "or HL7 aECG XML, DICOM, SCP, EDF, CSV, NumPy) or pick a sample. Files are deleted once the "
                    "report is shown.")
        with gr.Row():
            upload = gr.File(label="ECG file(s)", file_count="multiple", type="filepath", elem_id="anyecg-upload")
            with gr.Column():
                sample = gr.Dropdown(choices=list(samples), value=None, label="or a bundled sample",
                                     elem_id="anyecg-sample", interactive=True)
                button = gr.Button("Analyse", variant="primary", elem_id="anyecg-analyse")
        report = gr.HTML(elem_id="anyecg-output", js_on_load=None)
        downloads = gr.File(label="Downloads: profile rows (CSV) and the report page (HTML)", file_count="multiple",
                            interactive=False, elem_id="anyecg-downloads")

        def run(files, chosen):
            return analyse(reporter, files, chosen, samples, out_root)

        button.click(run, inputs=[upload, sample], outputs=[report, downloads], show_progress="minimal")
    demo.anyecg_reporter = reporter
    return demo


def launch(demo, host: str = "127.0.0.1", port: int | None = None, **kwargs):
    """Start the app (blocking unless `prevent_thread_lock=True`), offline: system fonts, no analytics, no share link."""
    import gradio as gr

    theme = gr.themes.Default(font=["system-ui", "Segoe UI", "Roboto", "DejaVu Sans", "sans-serif"],
                              font_mono=["ui-monospace", "DejaVu Sans Mono", "monospace"])
    css = ".anyecg-stamp{border:3px solid #a4161a;color:#5c0b0d;background:#fff5f5;padding:.5em .8em;border-radius:4px}" \
          ".anyecg-error{border:2px solid #8b0000;background:#fff5f5;padding:.3em .8em;border-radius:4px}"
    return demo.launch(server_name=host, server_port=port, share=False, theme=theme, css=css, show_error=False,
                       ssr_mode=False, **kwargs)


if __name__ == "__main__":  # python -m anyecg_hf.reporting.app [--model M]
    import argparse

    parser = argparse.ArgumentParser(description="AnyECG web app (Gradio)")
    parser.add_argument("--model", default=None, help=f"model folder or Hub id (default ${MODEL_ENV}, else ECGFounder)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    a = parser.parse_args()
    launch(build_app(a.model), host=a.host, port=a.port)
