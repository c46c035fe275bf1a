"""Registration of the AnyECG classes with transformers (`AutoConfig`, `AutoModel`, `AutoFeatureExtractor`, the
`ecg-*` pipelines), without importing transformers or torch when `anyecg_hf` is imported.

Why a hook: registering eagerly made `from anyecg_hf.io import read_ecg` and `anyecg --help` pay for torch and
transformers (seconds). `import anyecg_hf` now calls `install()`: whatever of transformers' Auto modules and
`transformers.pipelines` is already imported is registered at once, and a finder on `sys.meta_path` registers the
rest right after transformers imports them. So `AutoModel.from_pretrained(folder)` and
`transformers.pipeline("ecg-profiling", ...)` work after `import anyecg_hf` as before, and `import
anyecg_hf.pipelines` registers the tasks too. Both `register_*` functions are idempotent and may be called directly.
"""

from __future__ import annotations

import importlib.abc
import sys

_AUTO_MODULES = (
    "transformers.models.auto.configuration_auto",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.feature_extraction_auto",
)
_PIPELINES_MODULE = "transformers.pipelines"
_done = {"auto": False, "pipelines": False}
_busy = []


def register_auto_classes() -> None:
    """`AutoConfig` / `AutoModel` / `AutoFeatureExtractor` know the AnyECG config, models and feature extractor."""
    if _done["auto"]:
        return
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    from .modeling import AUTO_MODEL_CLASSES, AnyECGConfig
    from .processing import AnyECGFeatureExtractor

    AutoConfig.register(AnyECGConfig.model_type, AnyECGConfig, exist_ok=True)
    # A tuple makes AutoModel pick the class named in config.architectures (transformers' `_get_model_class`),
    # defaulting to the bare backbone like BertModel for BERT.
    AutoModel.register(AnyECGConfig, AUTO_MODEL_CLASSES, exist_ok=True)
    AutoFeatureExtractor.register(AnyECGConfig, AnyECGFeatureExtractor, exist_ok=True)
    _done["auto"] = True


def register_pipelines() -> None:
    """The `ecg-profiling`, `ecg-classification` and `ecg-embedding` tasks in transformers' `PIPELINE_REGISTRY`
    (and the Auto classes, which the pipelines load models with)."""
    if _done["pipelines"]:
        return
    register_auto_classes()
    from .pipelines import register_pipelines as register

    register()
    _done["pipelines"] = True


def _wanted() -> list:
    """The registrations that transformers' imported modules call for and that are not done yet."""
    out = []
    if not _done["auto"] and any(name in sys.modules for name in _AUTO_MODULES):
        out.append(register_auto_classes)
    if not _done["pipelines"] and _PIPELINES_MODULE in sys.modules:
        out.append(register_pipelines)
    return out


def _importing(done: str | None) -> bool:
    """Whether a module of transformers or of this package (other than `done`, whose import is just ending) is half
    imported: registering now would import it again, partially initialised; wait until the outermost import ends."""
    for name, module in list(sys.modules.items()):
        if name != done and (name.startswith(("transformers.", "anyecg_hf.")) or name == "transformers"):
            if getattr(getattr(module, "__spec__", None), "_initializing", False):
                return True
    return False


def _after_import(done: str | None = None) -> None:
    wanted = _wanted()
    if not wanted or _busy or _importing(done):
        return
    _busy.append(True)
    try:
        for register in wanted:
            register()
    finally:
        _busy.pop()
    if _done["auto"] and _done["pipelines"]:  # nothing left to wait for
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterOnImport)]


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader, then registers what is due (every other attribute is the real loader's)."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _after_import(module.__spec__.name)

    def __getattr__(self, attr):
        return getattr(self._loader, attr)


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Wraps the loaders of transformers' and this package's modules: the end of each import is a moment when
    registering may be due and safe."""

    def find_spec(self, name, path, target=None):
        if not (name.startswith(("transformers.", "anyecg_hf.")) or name == "transformers"):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Register what transformers has imported already; register the rest when it is imported (idempotent)."""
    if not any(isinstance(f, _RegisterOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterOnImport())
    _after_import()
