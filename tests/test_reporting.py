"""Per-ECG HTML reports (`anyecg_hf.reporting`, `anyecg report`) and the 12-lead plot's header / display filter.

The browser checks of the same pages (rendering offline, non-blank images, accessibility) are in
tests/test_reporting_browser.py."""

import base64
import io
import re
import shutil
import subprocess
import tempfile
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anyecg_hf.testing import write_tiny_report_model

ROOT = Path(__file__).resolve().parents[1]


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html):
    p = _Tags()
    p.feed(html)
    return p.tags, " ".join(" ".join(p.text).split())


def external_references(html: str) -> list:
    """Every URL the page would fetch or link outside itself (anything but data: URLs and relative .html links)."""
    tags, _ = parse(html)
    bad = []
    for tag, attrs in tags:
        for key in ("src", "href", "srcset", "poster", "data", "action"):
            v = attrs.get(key)
            if v is not None and not v.startswith("data:") and not (tag == "a" and re.fullmatch(r"[\w.-]+\.html", v)):
                bad.append((tag, key, v))
        if tag == "script" or (tag == "link" and attrs.get("rel") == "stylesheet"):
            bad.append((tag, attrs))
    bad += re.findall(r"url\(\s*['\"]?(?!data:)[^)]*\)|@import", html)
    return bad


@pytest.fixture(scope="module")
def report_model(tmp_path_factory):
    return write_tiny_report_model(tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture(scope="module")
def risk_model(tmp_path_factory):
    return write_tiny_report_model(tmp_path_factory.mktemp("mr") / "tiny-risk", risk=True)


@pytest.fixture(scope="module")
def reporter(report_model):
    from anyecg_hf.reporting import ECGReporter

    return ECGReporter.from_pretrained(str(report_model), top_k=5)


def _png(b64):
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_report_page_content_matches_the_pipeline(reporter, report_model, assets):
    from anyecg_hf.io import read_ecg
    from anyecg_hf.prediction import load_model_and_extractor
    from anyecg_hf.pipelines.profiling import ECGProfilingPipeline
    from anyecg_hf.plotting import ecg_plot_size

    path = assets / "data" / "cinc2021" / "JS20000.hea"
    result = reporter.report(str(path))
    model, fe = load_model_and_extractor(str(report_model))
    expected = ECGProfilingPipeline(model=model, feature_extractor=fe)(read_ecg(path), top_k=5)["diagnoses"]
    tags, text = parse(result.html)
    rows = re.findall(r'<tr class="condition"><td class="num">(\d+)</td><th scope="row">([^<]+)</th>.*?'
                      r'</span>([\d.]+)&nbsp;%</td>\s*<td class="num">([\d.]+)</td>\s*<td class="(pos|neg)">', result.html, re.S)
    assert [r[1] for r in rows] == [d["label"] for d in expected]
    assert [float(r[2]) for r in rows] == [round(100 * d["score"], 1) for d in expected]
    assert [float(r[3]) for r in rows] == [round(d["threshold"], 2) for d in expected]
    assert [r[4] == "pos" for r in rows] == [d["score"] >= d["threshold"] for d in expected]
    codes = re.findall(r'<tr class="condition">.*?</th>\s*<td>([^<]*)</td>', result.html, re.S)
    from anyecg_hf.labels import crosswalk

    table = crosswalk("ecgfounder", "snomed")
    exact = table[(table["tier"] == "exact") & (table["code"] != "")]
    for d, shown in zip(expected, codes):
        want = list(exact[exact["label"] == d["label"]]["code"])
        assert shown == (f"SNOMED-CT {', '.join(want)}" if want else "&mdash;"), (d["label"], shown)
    from anyecg_hf.reporting.context import _code_text

    assert _code_text({"label": "PREMATURE VENTRICULAR COMPLEXES", "code_system": "free-text", "code": None}) == \
        "SNOMED-CT 427172004, 17338001"  # every exact code of the crosswalk, as in the FHIR output
    assert _code_text({"label": "Heart failure", "code_system": "ICD-10", "code": "I50"}) == "ICD-10 I50"
    assert "Research use only \u2014 not a medical device" in text
    assert "tiny" in text and "Precision fp32" in text  # model id and precision
    # the tracing: inline PNG of the documented size, not blank, with alt text naming the record
    imgs = [a for t, a in tags if t == "img"]
    assert len(imgs) == 1 and imgs[0]["alt"].startswith("12-lead ECG tracing of record JS20000")
    png = _png(imgs[0]["src"].split(",", 1)[1])
    assert png.size == ecg_plot_size(110)
    px = np.asarray(png.convert("L"))
    assert (px < 90).mean() > 0.005  # dark trace pixels exist
    assert external_references(result.html) == []
    # quality: one row per lead in the record's order; the diagnoses-only model explains the missing risk curves
    lead_rows = re.findall(r'<tr><th scope="row">([^<]+)</th><td class="(?:ok|flag)">', result.html)
    assert lead_rows == list(result.record.lead_names)
    assert "no risk head" in text
    # table rows: profile_rows plus the precision and model columns
    assert {r["precision"] for r in result.rows} == {"fp32"} and len(result.rows) == 150


def test_report_shows_cart_measurements_and_flags(reporter, assets):
    from anyecg_hf.io import read_ecg

    record = read_ecg(assets / "data" / "cinc2021" / "HR06000.hea")
    record.metadata["measurements"] = {"heart_rate": 72.0, "pr_ms": 160, "qrs_ms": 92, "qt_ms": 380, "qtc_ms": 410,
                                       "p_axis": 45, "qrs_axis": -30, "t_axis": 40}
    record.signal[record.lead_names.index("V2")] = 0.0  # a flat lead
    result = reporter.report(record)
    table = re.search(r'<table id="measurements-table">(.*?)</table>', result.html, re.S).group(1)
    names = re.findall(r'<th scope="col">([^<]+)</th>', table)
    values = re.findall(r'<td class="num">([^<]+)</td>', table)
    assert dict(zip(names, values)) == {
        "Heart rate": "72 bpm", "PR interval": "160 ms", "QRS duration": "92 ms", "QT interval": "380 ms",
        "QTc interval": "410 ms", "P axis": "45\u00b0", "QRS axis": "-30\u00b0", "T axis": "40\u00b0"}
    flagged = re.findall(r'<tr><th scope="row">([^<]+)</th><td class="flag">flat', result.html)
    assert flagged == ["V2"]
    tags, _ = parse(result.html)
    alt = [a["alt"] for t, a in tags if t == "img"][0]
    assert "QTc interval 410 ms" in alt


def test_risk_model_report_has_curves(risk_model, assets):
    from anyecg_hf.reporting import ECGReporter

    result = ECGReporter.from_pretrained(str(risk_model)).report(str(assets / "data" / "cinc2021" / "E07500.hea"))
    tags, text = parse(result.html)
    imgs = {a.get("id"): a for t, a in tags if t == "img"}
    assert set(imgs) == {"ecg-tracing", "risk-curves"}
    assert imgs["risk-curves"]["alt"].startswith("Risk curves of record E07500")
    assert _png(imgs["risk-curves"]["src"].split(",", 1)[1]).size == (800, 500)
    risk_rows = [r for r in result.rows if r["kind"] == "risk"]
    assert len(risk_rows) == 3 and all(0 <= r["risk_10y"] <= 1 for r in risk_rows)
    assert f"{100 * risk_rows[0]['risk_10y']:.1f}&nbsp;%" in result.html


def _cli(*args):
    home = tempfile.mkdtemp(prefix="anyecg-home-")  # HF / matplotlib caches go there, not into the repository
    return subprocess.run([sys.executable, "-m", "anyecg_hf.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                                         "OMP_NUM_THREADS": "1", "HOME": str(home)}, timeout=600)


def test_report_cli_folder_index_and_exit_codes(report_model, assets, tmp_path):
    src = tmp_path / "ecgs"
    src.mkdir()
    for name in ("HR06000", "JS20000"):
        for ext in (".hea", ".mat"):
            shutil.copy(assets / "data" / "cinc2021" / f"{name}{ext}", src / f"{name}{ext}")
    (src / "broken.hea").write_text("not a header\n")
    out = tmp_path / "report"
    r = _cli("report", src, "--model", report_model, "--out", out, "--top-k", "3")
    assert r.returncode == 0, r.stderr
    assert "skipped broken.hea" in r.stderr and "malformed WFDB header" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["HR06000.html", "JS20000.html", "index.html"]
    index = (out / "index.html").read_text()
    tags, text = parse(index)
    assert [a["href"] for t, a in tags if t == "a"] == ["HR06000.html", "JS20000.html"]
    assert "broken.hea" in text and "malformed WFDB header" in text
    assert external_references(index) == []
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.hea").write_text("junk\n")
    assert _cli("report", only_bad, "--model", report_model, "--out", tmp_path / "r2").returncode == 1
    assert _cli("report", tmp_path / "missing", "--out", tmp_path / "r3").returncode == 2
    r = _cli("report", src, "--model", tmp_path / "no-model", "--out", tmp_path / "r4")
    assert r.returncode == 3 and "cannot load the model" in r.stderr


# ------------------------------------------------------------------------------------------------ the 12-lead plot
def test_plot_subtitle_never_leaves_the_page(assets):
    from anyecg_hf.io import read_ecg
    from anyecg_hf.plotting import plot_ecg

    record = read_ecg(assets / "data" / "cinc2021" / "HR06000.hea")
    long = "12 leads, 500 Hz, 10.0 s   " + "; ".join(["NONSPECIFIC T WAVE ABNORMALITY NOW EVIDENT IN 93%"] * 12)
    fig = plot_ecg(record, title="T" * 400, subtitle=long, dpi=80,
                   measurements={"heart_rate": 61, "pr_ms": 150, "qrs_ms": 90, "qt_ms": 400, "qtc_ms": 402})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    texts = [t for t in fig.axes[0].texts if t.get_text()]
    for t in texts:
        box = t.get_window_extent(renderer)
        assert box.x0 >= page.x0 - 0.5 and box.x1 <= page.x1 + 0.5, (t.get_text()[:40], box, page)
    sub = next(t for t in texts if t.get_text().startswith("12 leads"))
    assert sub.get_text().count("\n") == 1 and sub.get_text().endswith("\u2026")  # two lines, then cut
    head = next(t for t in texts if t.get_text().startswith("TTT"))
    meas = next(t for t in texts if t.get_text().startswith("HR 61 bpm"))
    assert meas.get_text() == "HR 61 bpm   PR 150 ms   QRS 90 ms   QT/QTc 400/402 ms"
    assert head.get_window_extent(renderer).x1 < meas.get_window_extent(renderer).x0  # no overlap
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_plot_display_filter_has_no_edge_transient(assets):
    """JS20007 starts on a step: with scipy's default odd extension the display high-pass swung the first
    second's baseline by up to 1.2 mV; mirrored edges keep it near zero, as in the rest of the record."""
    from anyecg_hf.io import read_ecg
    from anyecg_hf.plotting import _display_signal

    for name in ("JS20007", "JS20006"):
        record = read_ecg(assets / "data" / "cinc2021" / f"{name}.hea")
        fs = int(record.sampling_rate)
        y = _display_signal(record.signal[:, : 10 * fs], fs, True)
        first = np.abs(np.median(y[:, :fs], axis=1))
        later = np.abs(np.median(y[:, fs:].reshape(12, 9, fs), axis=2)).max(axis=1)
        assert first.max() < 0.3, (name, first.max())
        assert np.all(first <= np.maximum(0.3, 2 * later)), name


# ------------------------------------------------------------------------------------------------ the app's handler
def test_app_handler_samples_uploads_and_errors(reporter, assets, tmp_path):
    """The web app's handler without Gradio (the browser test drives the real app): a sample, an upload of a WFDB
    pair, a header without its signal file, a corrupt file; uploads are gone afterwards in every case."""
    import csv

    from anyecg_hf.io import ECGReadError, read_ecg
    from anyecg_hf.reporting.app import analyse, sample_files

    samples = sample_files()
    assert sorted(samples) == ["E07500", "HR06000", "HR06001", "HR06002", "JS20000"]
    fragment, downloads = analyse(reporter, None, "HR06000", samples, out_root=str(tmp_path))
    assert "ECG report: HR06000" in fragment and fragment.startswith("<style>")
    with open(downloads[0], newline="") as f:
        rows = list(csv.DictReader(f))
    expected = reporter.report(samples["HR06000"]).rows
    assert [r["label"] for r in rows] == [r["label"] for r in expected]
    assert [float(r["score"]) for r in rows[:5]] == pytest.approx([r["score"] for r in expected[:5]], abs=1e-12)
    assert {r["precision"] for r in rows} == {"fp32"}
    assert Path(downloads[1]).read_text().startswith("<!DOCTYPE html>")

    up = tmp_path / "upload1"
    up.mkdir()
    for ext in (".hea", ".mat"):
        shutil.copy(assets / "data" / "cinc2021" / f"JS20000{ext}", up / f"JS20000{ext}")
    fragment, downloads = analyse(reporter, [str(up / "JS20000.mat"), str(up / "JS20000.hea")], "HR06000", samples)
    assert "ECG report: JS20000" in fragment and len(downloads) == 2  # the upload wins over the sample
    assert not up.exists()  # the upload and its folder are deleted

    up = tmp_path / "upload2"
    up.mkdir()
    shutil.copy(assets / "data" / "cinc2021" / "JS20000.hea", up / "JS20000.hea")
    fragment, downloads = analyse(reporter, [str(up / "JS20000.hea")], None, samples)
    assert downloads == [] and 'role="alert"' in fragment and "JS20000.mat is missing" in fragment
    assert not up.exists()

    up = tmp_path / "upload3"
    up.mkdir()
    bad = up / "ecg.xml"
    bad.write_text("<RestingECG><Waveform>")
    with pytest.raises(ECGReadError) as err:
        read_ecg(bad)
    fragment, downloads = analyse(reporter, [str(bad)], None, samples)
    assert downloads == [] and str(err.value).replace(str(bad), "ecg.xml") in fragment.replace("&#x27;", "'")
    assert "Traceback" not in fragment and str(tmp_path) not in fragment and not up.exists()

    fragment, _ = analyse(reporter, None, None, samples)
    assert "Upload an ECG file" in fragment


def test_report_records_the_precision_it_ran_in(report_model, reporter, assets):
    import warnings

    from anyecg_hf.reporting import ECGReporter

    path = str(assets / "data" / "cinc2021" / "HR06001.hea")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "bf16 emulated" on CPUs without native bfloat16
        bf16 = ECGReporter.from_pretrained(str(report_model), precision="bf16", top_k=5).report(path)
    fp32 = reporter.report(path)
    assert bf16.context["model"]["precision"] == "bf16" and fp32.context["model"]["precision"] == "fp32"
    assert "Precision bf16" in parse(bf16.html)[1] and {r["precision"] for r in bf16.rows} == {"bf16"}
    a = np.array([d["score"] for d in fp32.profile["diagnoses"]])
    b = {d["id"]: d["score"] for d in bf16.profile["diagnoses"]}
    diff = np.abs(a - np.array([b[d["id"]] for d in fp32.profile["diagnoses"]]))
    assert 0 < diff.max() < 0.05  # it really ran in bfloat16 (not float32), and agrees to bf16's precision


def test_single_lead_record_report(reporter, assets):
    """A one-lead recording (a wearable's lead I) against the 12-lead model: stacked layout, words to match."""
    from anyecg_hf.io import ECGRecord, read_ecg
    from anyecg_hf.plotting import ecg_plot_size

    full = read_ecg(assets / "data" / "cinc2021" / "HR06002.hea")
    one = ECGRecord(signal=full.signal[:1], sampling_rate=full.sampling_rate, lead_names=["I"],
                    metadata={"format": "wfdb"}, source="watch_I.npy")
    result = reporter.report(one)
    tags, text = parse(result.html)
    (img,) = [a for t, a in tags if t == "img"]
    assert img["alt"].startswith("1-lead ECG tracing of record watch_I on ECG paper: 1 leads (I)")
    assert _png(img["src"].split(",", 1)[1]).size == ecg_plot_size(110, "stack", 1)
    assert "1-lead tracing" in text
    assert re.findall(r'<tr><th scope="row">([^<]+)</th><td class="(?:ok|flag)">', result.html) == ["I"]
