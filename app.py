"""Hugging Face Space entry point: the AnyECG web app (upload an ECG, see its report, download the rows).

Locally: `python app.py` or `anyecg app --model M`. In a Space (sdk: gradio, app_file: app.py): set the Space
variable ANYECG_MODEL to a model repo id (default: the public ECGFounder, converted on first start), and list
`anyecg_hf[app]` in requirements.txt. See docs/app.md.
"""

import os

from anyecg_hf.reporting.app import build_app, launch

demo = build_app(os.environ.get("ANYECG_MODEL") or None)

if __name__ == "__main__":
    in_space = bool(os.environ.get("SPACE_ID"))  # a Space serves on 0.0.0.0:7860; locally stay on this machine
    launch(demo, host="0.0.0.0" if in_space else "127.0.0.1", port=7860 if in_space else None)
