"""Helpers for tests, benchmarks and examples: tiny configs and the seeded ECGFounder weights of the parity
fixture (`tests/assets/fixtures/ecgfounder_parity/README.md`), so that no test needs network or real weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .modeling import AnyECGConfig, LabelSpace


def assets_dir() -> Path:
    """The test assets of a clone (`tests/assets`: real CinC/format files and the parity fixture, with their
    licence notes); override with `ANYECG_ASSETS_DIR`. Nothing here reads outside the repository."""
    env = os.environ.get("ANYECG_ASSETS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "tests" / "assets"


def parity_dir() -> Path:
    return assets_dir() / "fixtures" / "ecgfounder_parity"


def copy_cinc_records(folder, n: int) -> list[str]:
    """Copy the first `n` CinC records of the assets (`.hea` + `.mat`) into `folder` (created); their names."""
    src = assets_dir() / "data" / "cinc2021"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(p.stem for p in src.glob("*.hea"))[:n]
    for name in names:
        for ext in (".hea", ".mat"):
            shutil.copy(src / f"{name}{ext}", folder / f"{name}{ext}")
    return names


class Hang(BaseException):
    """Raised by `hang_guard`; a `BaseException` so that no `except Exception` in the code under test (readers
    wrap every parser failure into `ECGReadError`) can turn a hang into an ordinary error."""


@contextmanager
def hang_guard(seconds: int):
    """Raise `Hang` after `seconds` (SIGALRM; a no-op where there is none). A guard for tests of bounded work, never
    a timing assertion: the limit is far above the expected time."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def boom(signum, frame):
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(int(seconds))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def tiny_config(**overrides) -> AnyECGConfig:
    """A ~20 k-parameter backbone with the released topology (2 stages) for fast tests."""
    kwargs = dict(
        base_filters=8,
        filter_list=[16, 32],
        m_blocks_list=[1, 2],
        groups_width=8,
        label_space=LabelSpace.from_names(["AF", "SB", "STACH"]),
    )
    kwargs.update(overrides)
    return AnyECGConfig(**kwargs)


def seeded_ecgfounder_state_dict(model: str = "12lead", layout_path: str | os.PathLike | None = None) -> dict:
    """Original-layout (`Net1D`) state dict with the fixture's seeded weights (`model` = "12lead" or "1lead")."""
    layout_path = layout_path or parity_dir() / "state_dict_layout.json"
    spec = json.loads(Path(layout_path).read_text())[model]
    rng = np.random.default_rng(spec["seed"])
    state = {}
    for key, shape, _dtype in spec["keys"]:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.int64)
            continue
        a = rng.standard_normal(shape).astype(np.float32)
        if len(shape) >= 2:
            a *= np.float32(1 / np.sqrt(np.prod(shape[1:])))
        elif key.endswith("running_var"):
            a = np.abs(a) + np.float32(0.5)
        else:
            a *= np.float32(0.1)
        state[key] = torch.from_numpy(a)
    return state


def write_seeded_ecgfounder_checkpoint(path: str | os.PathLike, model: str = "12lead", wrap: bool = True) -> Path:
    """Write the seeded weights as the released files are laid out: `{"state_dict": {"module.<key>": ...}}`."""
    state = seeded_ecgfounder_state_dict(model)
    obj = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 1} if wrap else state
    torch.save(obj, path)
    return Path(path)


def reference_quality_flags(x, fs, names) -> list:
    """The signal-quality checks (`anyecg_hf.processing.signal_quality`, without the electrode-reversal flag)
    written plainly per lead with scipy, as they were first implemented: `(kind, lead, value)` per flag. The
    reference of the tests and of `benchmarks/bench_preprocessing.py`."""
    from scipy import signal as sps

    out, band = [], {}
    sos_band = sps.butter(4, [0.67, min(40.0, 0.45 * fs)], "bandpass", fs=fs, output="sos")
    sos_low = sps.butter(4, min(40.0, 0.45 * fs), "lowpass", fs=fs, output="sos")
    for name, lead in zip(names, x):
        finite = np.isfinite(lead)
        nan_frac = 1.0 - finite.mean()
        if nan_frac > 0.5 or nan_frac == 1.0:
            out.append(("nan_filled", name, nan_frac))
            continue
        if nan_frac > 0:
            out.append(("nan_gaps", name, nan_frac))
        v = np.where(finite, lead, 0.0)
        ptp = float(np.ptp(v[finite]))
        if ptp <= 0.01:
            out.append(("flat", name, ptp))
            continue
        rails = (v == v[finite].max()) | (v == v[finite].min())
        if rails[finite].mean() >= 0.02:
            out.append(("saturated", name, rails[finite].mean()))
        band[name] = sps.sosfiltfilt(sos_band, v)
        hf = v - sps.sosfiltfilt(sos_low, v)
        ratio = np.sqrt(np.mean(hf**2)) / (np.sqrt(np.mean(band[name] ** 2)) + 1e-12)
        if ratio >= 1.0:
            out.append(("noisy", name, ratio))
    i, ii = band["I"], band["II"]
    res = {n: np.linalg.norm(band[n] - d) / (np.linalg.norm(band[n]) + 1e-12)
           for n, d in {"III": ii - i, "aVR": -(i + ii) / 2, "aVL": i - ii / 2, "aVF": ii - i / 2}.items() if n in band}
    worst = max(res, key=res.get)
    if res[worst] > 0.2:
        out.append(("limb_leads_inconsistent", worst, res[worst]))
    return out


def write_tiny_report_model(path, *, risk: bool = False, seed: int = 0, bias_shift: float = 2.0) -> Path:
    """Save a tiny model with the ECGFounder label space (so the SNOMED crosswalk applies) whose probabilities are
    spread out (a few conditions positive on real ECGs), for report / FHIR / app tests and the tutorial.
    `risk=True` adds a discrete-time risk head over three conditions (`AnyECGForHealthProfiling`)."""
    from .modeling import AnyECGForDiagnosis, AnyECGForHealthProfiling

    torch.manual_seed(seed)
    overrides = dict(label_space=LabelSpace.ecgfounder())
    if risk:
        overrides.update(risk_label_space=LabelSpace.from_names(["Heart failure", "Incident AF", "Stroke"]),
                         risk_head_type="discrete")
    cfg = tiny_config(**overrides)
    model = (AnyECGForHealthProfiling if risk else AnyECGForDiagnosis)(cfg).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)  # spread the probabilities so that rankings and thresholds matter
        model.classifier.bias.sub_(bias_shift)  # and make a handful positive, as on a real ECG
    model.save_pretrained(path)
    return Path(path)
