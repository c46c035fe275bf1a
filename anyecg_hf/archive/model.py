"""The job's model: loaded with the prediction core's loader (the default model is converted once), and its
identity (Hub id + revision, or a local folder + a hash of its weights) recorded with every row."""

from __future__ import annotations

import json
import os

from ..files import sha256_file
from ..prediction import DEFAULT_MODEL_ID, is_default_model, load_model_and_extractor, resolve_model
from .settings import JobSettings, ModelLoadError


def _model_identity(requested, revision, source, model) -> tuple[str, str]:
    """`(model id, revision)` recorded with every row: the Hub id + revision/commit, or for local folders the
    folder and a hash of its weights (so results can be traced to the exact weights)."""
    source = str(source)
    meta_file = os.path.join(source, "anyecg_source.json")
    if is_default_model(requested):
        info = {}
        if os.path.isfile(meta_file):
            with open(meta_file) as f:
                info = json.load(f)
        rev = info.get("revision") or revision or "main"
        sha = info.get("sha256")
        return DEFAULT_MODEL_ID, f"{rev} (checkpoint sha256 {sha[:16]})" if sha else rev
    if os.path.isdir(source):
        weights = os.path.join(source, "model.safetensors")
        rev = revision or (f"sha256:{sha256_file(weights)[:16]}" if os.path.isfile(weights) else "local")
        return os.path.abspath(source), rev
    commit = getattr(model.config, "_commit_hash", None)
    return str(requested), revision or commit or "main"


def load_model(settings: JobSettings, device):
    """Load `(model, feature_extractor, model_id, revision)` with the pipelines' loader.

    Raises:
        ModelLoadError: the model cannot be resolved or loaded (message says why; offline default included).
    """
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the weight-loading bar of every process is noise in a job's log
    try:
        source = resolve_model(settings.model, revision=settings.revision)
        model, extractor = load_model_and_extractor(
            source, device=None, revision=None if os.path.isdir(str(source)) else settings.revision
        )
    except (OSError, ValueError, ImportError, RuntimeError) as err:
        msg = str(err)
        if settings.model is not None and not msg.startswith(str(settings.model)):
            msg = f"cannot load the model {settings.model!r}: {msg}"
        raise ModelLoadError(msg) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.to(device)
    extractor = extractor.with_windowing(settings.windowing)  # the variant the pipelines use
    model_id, rev = _model_identity(settings.model, settings.revision, source, model)
    return model, extractor, model_id, rev
