"""Regenerate the README's screenshots of a report page and of the web app (docs/screenshots/*.png).

    python docs/screenshots/make_screenshots.py [--out docs/screenshots]

Needs Debian's `chromium` + `chromium-driver`, Selenium and Gradio (`pip install -e ".[test,app]"`). Uses a tiny
stand-in model (random weights: the findings in the pictures mean nothing), the Philips sample of the test assets
(it carries the cart's measurements) and a CinC record; no network.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _driver(width: int, height: int):
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")),
                            options=opts)


def main(out: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from anyecg_hf.reporting import ECGReporter
    from anyecg_hf.reporting.app import build_app, launch
    from anyecg_hf.testing import assets_dir, write_tiny_report_model

    os.makedirs(out, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="anyecg-shots-"))
    try:
        reporter = ECGReporter.from_pretrained(str(write_tiny_report_model(work / "tiny-model")), top_k=5)
        page = work / "report.html"
        result = reporter.report(str(assets_dir() / "data" / "formats" / "philips_sierra_1_04_01.xml"))
        page.write_text(result.html, encoding="utf-8")
        driver = _driver(1100, 1500)
        try:
            driver.get(page.as_uri())
            WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
            driver.save_screenshot(os.path.join(out, "report.png"))
        finally:
            driver.quit()

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        demo = build_app(reporter=reporter)
        launch(demo, port=port, prevent_thread_lock=True, quiet=True)
        files = []
        for ext in (".hea", ".mat"):
            shutil.copy(assets_dir() / "data" / "cinc2021" / f"JS20000{ext}", work / f"JS20000{ext}")
            files.append(str(work / f"JS20000{ext}"))
        driver = _driver(1280, 1250)
        try:
            driver.get(f"http://127.0.0.1:{port}/")
            box = WebDriverWait(driver, 60).until(
                lambda d: d.find_element(By.CSS_SELECTOR, "#anyecg-upload input[type=file]"))
            box.send_keys("\n".join(files))
            WebDriverWait(driver, 60).until(
                lambda d: "JS20000.mat" in "".join(d.find_element(By.ID, "anyecg-upload").text.split()))
            driver.find_element(By.ID, "anyecg-analyse").click()
            WebDriverWait(driver, 240).until(lambda d: d.find_elements(By.ID, "anyecg-report"))
            time.sleep(1.0)  # let the image decode and the layout settle
            driver.save_screenshot(os.path.join(out, "app.png"))
        finally:
            driver.quit()
            demo.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}/report.png and {out}/app.png")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    main(p.parse_args().out)
