"""anyecg_hf: ECG foundation models (ECGFounder backbone, AnyECG heads) for the Hugging Face ecosystem.

Importing the package is light (no torch, no transformers): every public name is imported on first use. The AnyECG
classes are registered with `AutoConfig` / `AutoModel` / `AutoFeatureExtractor`, and the `ecg-profiling`,
`ecg-classification` and `ecg-embedding` tasks with transformers' pipeline registry, as soon as transformers imports
those modules (an import hook, `anyecg_hf.registration`), so `import anyecg_hf` then `pipeline("ecg-profiling", ...)`
works as before.
"""

from __future__ import annotations

from .lazy import lazy_getattr
from .version import __version__

# public name -> module that defines it (imported on first attribute access)
_LAZY = {
    # core
    "AnyECGConfig": "anyecg_hf.modeling",
    "AnyECGPreTrainedModel": "anyecg_hf.modeling",
    "AnyECGModel": "anyecg_hf.modeling",
    "AnyECGForDiagnosis": "anyecg_hf.modeling",
    "AnyECGModelOutput": "anyecg_hf.modeling",
    "AnyECGDiagnosisOutput": "anyecg_hf.modeling",
    "LabelSpace": "anyecg_hf.modeling",
    "Condition": "anyecg_hf.modeling",
    # survival / profiling heads
    "AnyECGForRiskPrediction": "anyecg_hf.modeling",
    "AnyECGForHealthProfiling": "anyecg_hf.modeling",
    # preprocessing
    "AnyECGFeatureExtractor": "anyecg_hf.processing",
    # readers
    "ECGRecord": "anyecg_hf.io",
    "ECGReadError": "anyecg_hf.io",
    "read_ecg": "anyecg_hf.io",
    "read_ecg_dir": "anyecg_hf.io",
}

__all__ = ["__version__", *sorted(_LAZY)]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


from .registration import install as _install_registration  # noqa: E402

_install_registration()
