"""anyecg_hf: ECG foundation models (ECGFounder backbone, AnyECG heads) for the Hugging Face ecosystem.

Importing the package registers `AnyECGConfig` / the AnyECG models with `AutoConfig` / `AutoModel`, the feature
extractor with `AutoFeatureExtractor`, and the `ecg-profiling`, `ecg-classification` and `ecg-embedding` pipelines.
Everything else (readers, evaluation, data) is imported lazily on first use.
"""

from __future__ import annotations

import importlib

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


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'anyecg_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def _register() -> None:
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    from .modeling import AUTO_MODEL_CLASSES, AnyECGConfig

    AutoConfig.register(AnyECGConfig.model_type, AnyECGConfig, exist_ok=True)
    # A tuple makes AutoModel pick the class named in config.architectures (transformers' `_get_model_class`),
    # defaulting to the bare backbone like BertModel for BERT.
    AutoModel.register(AnyECGConfig, AUTO_MODEL_CLASSES, exist_ok=True)

    for module, hook in (("anyecg_hf.processing", None), ("anyecg_hf.pipelines", "register_pipelines")):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:  # sub-package not built yet in this checkout
            if err.name != module:
                raise
            continue
        if hook is None:
            AutoFeatureExtractor.register(AnyECGConfig, mod.AnyECGFeatureExtractor, exist_ok=True)
        else:
            getattr(mod, hook)()


_register()
