"""Philips Sierra ECG XML (`<restingecgdata>`, versions 1.03 to 1.04.02), via ecgdatakit.

The waveforms are usually XLI-compressed (LZW + second-order delta coding per lead; III, aVR, aVL, aVF stored as
residuals from I and II). ecgdatakit's decoder reproduces the reference decoder (sixlettervariables/
sierra-ecg-tools) sample for sample on both Philips test files; see `docs/io.md`.

PageWriter exports end with a 1 mV calibration pulse after the recording (11 s stored per lead: the ECG, a few
zero samples, a 0.2 s pulse on every lead, zeros). By default it is cut off and described in
`metadata["calibration_pulse"]`, so models do not see a square wave that is not ECG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _ecgdatakit
from .record import DEFAULT_MAX_SAMPLES, ECGReadError, ECGRecord, check_samples, check_size

FORMAT = "philips"
MAX_BYTES = 8 << 20


def find_calibration_pulse(signal: np.ndarray, sampling_rate: float):
    """Locate a trailing calibration block: all-zero columns, then the same non-zero constant on every lead for
    20 ms to 1 s, then zeros to the end.

    Returns:
        `(cut, pulse_start, pulse_stop, amplitude)` where `cut` is where the ECG ends, or `None`.
    """
    n = signal.shape[1]
    if n < 4:
        return None
    same = (signal == signal[:1]).all(axis=0)
    level = signal[0]
    i = n
    while i > 0 and same[i - 1] and level[i - 1] == 0:
        i -= 1
    stop = i
    if stop == 0:
        return None
    amplitude = level[stop - 1]
    while i > 0 and same[i - 1] and level[i - 1] == amplitude:
        i -= 1
    start = i
    width = (stop - start) / sampling_rate
    if amplitude == 0 or not 0.02 <= width <= 1.0 or start == 0:
        return None
    while i > 0 and same[i - 1] and level[i - 1] == 0:
        i -= 1
    if i == start:  # the pulse must be separated from the ECG by a zero gap
        return None
    return i, start, stop, float(amplitude)


def read_philips(path, *, waveform: str = "rhythm", keep_calibration: bool = False,
                 max_bytes=MAX_BYTES, max_samples=DEFAULT_MAX_SAMPLES) -> ECGRecord:
    """Read a Philips Sierra / PageWriter XML file (needs `pip install anyecg_hf[formats]`).

    Args:
        path: the `.xml` file.
        waveform (`str`, defaults to `"rhythm"`): `"rhythm"` or `"median"` (the representative beats).
        keep_calibration (`bool`, defaults to `False`): keep the trailing 1 mV calibration pulse.
        max_bytes (`int`, defaults to 8 MiB): largest file accepted. Sierra files are 10 s resting ECGs
            (< 1 MB); the limit also bounds what the LZW decoder can be made to expand.
        max_samples: size limit (see `read_ecg`).
    """
    path = Path(path)
    check_size(path, max_bytes, FORMAT)
    rec, messages = _ecgdatakit.parse(
        "ecgdatakit.parsing.parsers.sierra_xml", "SierraXMLParser", path, FORMAT, "Philips Sierra XML"
    )
    total = sum(len(lead.samples) for lead in rec.leads)
    check_samples(path, total, max_samples, FORMAT)
    out = _ecgdatakit.to_record(rec, path, FORMAT, waveform=waveform, messages=messages)
    if waveform.lower() == "rhythm" and not keep_calibration:
        found = find_calibration_pulse(out.signal, out.sampling_rate)
        if found is not None:
            cut, start, stop, amplitude = found
            out.metadata["calibration_pulse"] = {
                "amplitude_mV": round(amplitude, 6),
                "start_s": start / out.sampling_rate,
                "duration_s": (stop - start) / out.sampling_rate,
            }
            out.metadata["trimmed_samples"] = out.num_samples - cut
            out.signal = np.ascontiguousarray(out.signal[:, :cut])
    if out.num_samples == 0:
        raise ECGReadError(path, "no ECG samples before the calibration pulse", FORMAT)
    return out
