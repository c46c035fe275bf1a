"""ECG pipelines (`ecg-profiling`, `ecg-classification`, `ecg-embedding`): thin transformers pipelines on top of the
prediction core (`anyecg_hf.prediction`: records -> model inputs, named outputs, window aggregation, profiles).

The three tasks are registered with transformers' `PIPELINE_REGISTRY` when transformers' pipelines are imported
after `import anyecg_hf` (an import hook, `anyecg_hf.registration`; or call `register_pipelines()`), so that
`transformers.pipeline("ecg-profiling", model=...)` works. The built-in `feature-extraction` task is left alone.

Default model: the tasks have no fixed default model id, because the public ECGFounder repo holds no transformers
files. When `pipeline(task)` is called without `model`, the registry entry asks the factory
(`default_model.resolve_model`) for the converted, cached ECGFounder folder, downloading and converting it on first
use; offline with nothing cached it raises `DefaultModelUnavailableError` at once.
"""

from __future__ import annotations

import importlib

from ..lazy import lazy_getattr

TASKS = {
    "ecg-profiling": ("anyecg_hf.pipelines.profiling", "ECGProfilingPipeline"),
    "ecg-classification": ("anyecg_hf.pipelines.classification", "ECGClassificationPipeline"),
    "ecg-embedding": ("anyecg_hf.pipelines.embedding", "ECGEmbeddingPipeline"),
}

_LAZY = {
    # the default-model factory and the profile format live in the prediction core; importable here as before
    "DEFAULT_MODEL_ID": "anyecg_hf.prediction.default_model",
    "DefaultModelUnavailableError": "anyecg_hf.prediction.default_model",
    "resolve_model": "anyecg_hf.prediction.default_model",
    "load_model_and_extractor": "anyecg_hf.prediction.default_model",
    "default_cache_dir": "anyecg_hf.prediction.default_model",
    "aggregate_windows": "anyecg_hf.prediction.windows",
    "profile_records": "anyecg_hf.prediction.profiles",
    "profile_rows": "anyecg_hf.prediction.profiles",
    "ECGPipelineBase": "anyecg_hf.pipelines.base",
    **{cls: mod for mod, cls in TASKS.values()},
}

__all__ = ["TASKS", "ecg_pipeline", "register_pipelines", *sorted(_LAZY)]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


class _FactoryDefault(dict):
    """A `PIPELINE_REGISTRY` default whose model is produced by the default-model factory, and only when
    `pipeline(task)` is called without a model (reading the registry does not download anything)."""

    def __init__(self):
        super().__init__(model=None)

    def __getitem__(self, key):
        if key == "model":
            from ..prediction.default_model import resolve_model

            return resolve_model(None), None  # (model, revision): a local folder needs no revision
        return super().__getitem__(key)


def register_pipelines() -> None:
    """Register the ECG tasks with transformers' `PIPELINE_REGISTRY` (idempotent; called by the import hook of
    `anyecg_hf.registration` once transformers' pipelines are imported).

    Each task loads its model with `AutoModel`, which returns the class named in `config.architectures`
    (`AnyECGForDiagnosis`, `AnyECGForRiskPrediction`, `AnyECGForHealthProfiling` or the bare `AnyECGModel`).
    """
    from transformers import AutoModel
    from transformers.pipelines import PIPELINE_REGISTRY

    for task, (module, cls_name) in TASKS.items():
        existing = PIPELINE_REGISTRY.supported_tasks.get(task)
        cls = getattr(importlib.import_module(module), cls_name)
        if existing is not None and existing.get("impl") is cls:
            continue
        PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=cls, pt_model=AutoModel, default=_FactoryDefault())


def ecg_pipeline(task: str = "ecg-profiling", model=None, *, revision=None, device=None, **kwargs):
    """`transformers.pipeline(task, model=...)` with the default-model factory applied to `model` (`None`, the
    ECGFounder repo id, or an original `.pth` checkpoint are converted and cached first)."""
    from transformers import pipeline

    from ..prediction.default_model import resolve_model
    from ..registration import register_pipelines as _register

    if task not in TASKS:
        raise ValueError(f"Unknown ECG task {task!r}; expected one of {', '.join(TASKS)}.")
    _register()
    resolved = resolve_model(model, revision=revision) if isinstance(model, (str, type(None))) or hasattr(model, "__fspath__") else model
    if isinstance(resolved, str) and revision is not None and resolved != model:
        revision = None  # the revision selected the default checkpoint; the converted folder is local
    return pipeline(task, model=resolved, revision=revision, device=device, **kwargs)
