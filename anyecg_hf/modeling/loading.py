"""`load_checked`: `from_pretrained` that refuses a model whose weights do not cover its architecture.

transformers fills tensors missing from a checkpoint with random values and only logs a "MISSING" report, and it
loads NaN / inf weights as they are: a job then writes rows of random or NaN probabilities and exits 0. Our models
have no tensor that may legitimately be absent, so every missing, mismatched or non-finite tensor is an error
here (the rule `modeling_anyecg._load_strict` applies to ECGFounder checkpoints), raised before any row is
written. A checkpoint transformers cannot open at all (a pickled `pytorch_model.bin` that `weights_only=True`
refuses, a corrupt safetensors header) becomes one `ModelWeightsError` line instead of a library traceback.
"""

from __future__ import annotations

import os
import pickle


class ModelWeightsError(ValueError):
    """The weights of a model folder cannot be used; the message names the folder and the problem."""


def _listing(items, n=6) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f" ... ({len(items)} in all)" if len(items) > n else "")


def check_loading_info(info: dict, source) -> None:
    """Raise `ModelWeightsError` when `from_pretrained(..., output_loading_info=True)` reports missing or
    mismatched tensors (unexpected extra tensors are tolerated: they change nothing the model computes)."""
    missing = sorted(info.get("missing_keys") or [])
    mismatched = [str(m[0]) if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys") or []]
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensor(s) missing from the weights ({_listing(missing)})")
        if mismatched:
            parts.append(f"{len(mismatched)} tensor(s) of the wrong shape ({_listing(mismatched)})")
        raise ModelWeightsError(f"{source}: the weights do not cover the architecture: {'; '.join(parts)}; "
                                "refusing to run with randomly initialised tensors")


def check_finite(model, source) -> None:
    """Raise `ModelWeightsError` when a floating-point parameter or buffer holds NaN or infinity."""
    import torch

    bad = [name for name, t in model.state_dict().items()
           if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ModelWeightsError(f"{source}: {len(bad)} weight tensor(s) hold NaN or infinite values "
                                f"({_listing(bad)}); the checkpoint is corrupt")


def _why(err: BaseException, source) -> str:
    name = type(err).__name__
    first = str(err).strip().splitlines()[0] if str(err).strip() else name
    if isinstance(err, pickle.UnpicklingError):
        return (f"{source}: the PyTorch pickle (pytorch_model.bin) holds objects other than tensors and "
                "weights_only=True refuses it (loading it unsafely could run code); save the weights as "
                "model.safetensors")
    if name == "SafetensorError":
        return f"{source}: model.safetensors is corrupt or truncated ({first})"
    return f"{source}: cannot load the weights ({name}: {first})"


def load_checked(source, model_class=None, **kwargs):
    """`model_class.from_pretrained(source, **kwargs)` (default `AutoModel`), refusing missing, mismatched and
    non-finite weights and turning unreadable checkpoints into `ModelWeightsError`.

    Raises:
        ModelWeightsError: the folder's weights cannot be used (message names `source` and the problem).
        OSError: nothing loadable at `source` (not found, offline), as `from_pretrained` raises it.
    """
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    cls = model_class or AutoModel
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "LOAD REPORT" table of missing keys: our error says it in one line
    try:
        model, info = cls.from_pretrained(source, output_loading_info=True, **kwargs)
    except (OSError, ImportError, ModelWeightsError):
        raise
    except ValueError as err:
        raise ModelWeightsError(_why(err, source)) from None
    except Exception as err:  # UnpicklingError, SafetensorError, torch errors: the file cannot be decoded
        raise ModelWeightsError(_why(err, source)) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    check_loading_info(info, os.fspath(source) if isinstance(source, os.PathLike) else source)
    check_finite(model, source)
    return model
