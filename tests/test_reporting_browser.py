"""The report pages and the web app in a real headless browser (Debian's chromium + chromium-driver, Selenium).

Skipped only when the browser, its driver or Selenium is absent (`.ci/run` installs them); the app tests also need
Gradio (extra `[app]`)."""

import os
import re
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from anyecg_hf.plotting import ecg_plot_size
from anyecg_hf.testing import write_tiny_report_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _driver(offline: bool = False):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1800",
                "--no-first-run", "--disable-background-networking", "--disable-component-update"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(120)
    if offline:  # no network at all, as on a ward PC without internet
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                               {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    return driver


def _requested_urls(driver) -> list:
    import json

    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _png_pixels(png_bytes):
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png_bytes)).convert("L")).astype(float)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_report_model(tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture(scope="module")
def reporter(model_dir):
    from anyecg_hf.reporting import ECGReporter

    return ECGReporter.from_pretrained(str(model_dir), top_k=5)


# ------------------------------------------------------------------------------------------------ report pages
def test_report_page_offline_renders_and_is_accessible(reporter, assets, tmp_path):
    src = tmp_path / "ecgs"
    src.mkdir()
    for ext in (".hea", ".mat"):
        shutil.copy(assets / "data" / "cinc2021" / f"HR06000{ext}", src / f"HR06000{ext}")
    shutil.copy(assets / "data" / "formats" / "philips_sierra_1_04_01.xml", src)
    out = tmp_path / "report"
    written = reporter.write_folder([src], out)
    assert len(written["pages"]) == 2 and not written["errors"]
    driver = _driver(offline=True)
    try:
        for page in ("index.html", "HR06000.html", "philips_sierra_1_04_01.html"):
            driver.get((out / page).as_uri())
            WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
            # nothing but the page itself was requested (images are data: URLs)
            urls = [u for u in _requested_urls(driver) if not u.startswith("data:")]
            assert urls == [(out / page).as_uri()], urls
            # accessibility: language, title, one h1 then h2s, alt text on every image, table headers
            a11y = driver.execute_script("""
                const hs = [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => +h.tagName[1]);
                return {lang: document.documentElement.lang, title: document.title,
                        h1: document.querySelectorAll('h1').length, levels: hs,
                        noAlt: [...document.images].filter(i => !(i.getAttribute('alt') || '').trim()).length,
                        tables: document.querySelectorAll('table').length,
                        tablesWithoutTh: [...document.querySelectorAll('table')].filter(t => !t.querySelector('th')).length,
                        stamp: document.querySelector('.stamp').innerText};""")
            assert a11y["lang"] == "en" and "not a medical device" in a11y["title"].lower()
            assert a11y["h1"] == 1 and a11y["levels"][0] == 1
            assert all(b - a <= 1 for a, b in zip(a11y["levels"], a11y["levels"][1:])), a11y["levels"]
            assert a11y["noAlt"] == 0 and a11y["tables"] >= 1 and a11y["tablesWithoutTh"] == 0
            assert "RESEARCH USE ONLY" in a11y["stamp"].upper()
            if page == "index.html":
                continue
            img = driver.find_element(By.ID, "ecg-tracing")
            state = driver.execute_script("return [arguments[0].complete, arguments[0].naturalWidth, "
                                          "arguments[0].naturalHeight]", img)
            assert state == [True, *ecg_plot_size(110)]
            driver.execute_script("arguments[0].scrollIntoView()", img)
            px = _png_pixels(img.screenshot_as_png)
            assert px.std() > 20 and (px < 90).mean() > 0.003  # grid + dark traces, not a blank box
            if page.startswith("philips"):  # the cart's measurements are on the page
                cells = driver.execute_script(
                    "const t = document.getElementById('measurements-table');"
                    "return [[...t.querySelectorAll('th')].map(c => c.innerText),"
                    "        [...t.querySelectorAll('td')].map(c => c.innerText)];")
                shown = dict(zip(*cells))
                assert shown["PR interval"] == "164 ms" and shown["QTc interval"] == "412 ms", shown
    finally:
        driver.quit()


# ------------------------------------------------------------------------------------------------ the web app
@pytest.fixture(scope="module")
def app_url(reporter, tmp_path_factory):
    pytest.importorskip("gradio")
    upload_dir = tmp_path_factory.mktemp("gradio")
    from anyecg_hf.reporting.app import build_app, launch

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(upload_dir))  # where Gradio keeps uploads: checked to be empty afterwards
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        demo = build_app(reporter=reporter)
        launch(demo, port=port, prevent_thread_lock=True, quiet=True)
        yield f"http://127.0.0.1:{port}/", upload_dir
        demo.close()


def _analyse(driver, url, files, timeout=240):
    driver.get(url)
    box = WebDriverWait(driver, 60).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "#anyecg-upload input[type=file]")))
    box.send_keys("\n".join(str(f) for f in files))
    # the upload finished when the file names are listed in the component
    def listed(d):  # (the component breaks a name before its extension)
        text = "".join(d.find_element(By.ID, "anyecg-upload").text.split())
        return all(Path(f).name in text for f in files)

    WebDriverWait(driver, 60).until(listed)
    driver.find_element(By.ID, "anyecg-analyse").click()
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_elements(By.ID, "anyecg-report") or d.find_elements(By.ID, "anyecg-error"))


def test_app_upload_shows_tracing_and_top_conditions(app_url, reporter, assets, tmp_path):
    from anyecg_hf.io import read_ecg

    url, upload_dir = app_url
    files = [tmp_path / "JS20000.hea", tmp_path / "JS20000.mat"]
    for f in files:
        shutil.copy(assets / "data" / "cinc2021" / f.name, f)
    expected = reporter.pipe(read_ecg(files[0]), top_k=3)["diagnoses"]
    driver = _driver()
    try:
        _analyse(driver, url, files)
        out = driver.find_element(By.ID, "anyecg-output")
        assert "ECG report: JS20000" in out.text
        img = driver.find_element(By.ID, "ecg-tracing")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == ecg_plot_size(110)[0]
        driver.execute_script("arguments[0].scrollIntoView()", img)
        px = _png_pixels(img.screenshot_as_png)
        assert px.std() > 20 and (px < 90).mean() > 0.003
        rows = driver.find_elements(By.CSS_SELECTOR, "#conditions-table tr.condition")
        assert len(rows) >= 3
        shown = [r.find_element(By.TAG_NAME, "th").text for r in rows[:3]]
        assert shown == [d["label"] for d in expected]
        probs = [re.search(r"([\d.]+)\s*%", r.text).group(1) for r in rows[:3]]
        assert probs == [f"{100 * d['score']:.1f}" for d in expected]
        downloads = "".join(driver.find_element(By.ID, "anyecg-downloads").text.split())
        assert "JS20000_profile.csv" in downloads and "JS20000_report.html" in downloads
    finally:
        driver.quit()
    time.sleep(0.5)
    left = [p.name for p in Path(upload_dir).rglob("*") if p.is_file() and p.name.startswith("JS20000.")]
    assert left == [], f"uploaded files kept after the response: {left}"


def test_app_corrupt_upload_shows_the_readers_message(app_url, tmp_path):
    from anyecg_hf.io import ECGReadError, read_ecg

    url, upload_dir = app_url
    bad = tmp_path / "corrupt_ecg.xml"
    bad.write_text("<RestingECG><Waveform><LeadData>")
    with pytest.raises(ECGReadError) as err:
        read_ecg(bad)
    reader_message = str(err.value).replace(str(bad), bad.name)
    driver = _driver()
    try:
        _analyse(driver, url, [bad])
        alert = driver.find_element(By.ID, "anyecg-error").text
        assert reader_message in alert, (reader_message, alert)
        page = driver.find_element(By.TAG_NAME, "body").text
        assert "Traceback" not in page and 'File "' not in page
    finally:
        driver.quit()
    assert not [p for p in Path(upload_dir).rglob("corrupt_ecg.xml")]
