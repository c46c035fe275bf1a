"""Initialising a model to fine-tune: from the original ECGFounder checkpoint, a saved AnyECG model or a fresh
config, with the dataset's label spaces; the backbone is copied whole and head rows are transferred by condition."""

from __future__ import annotations

import inspect
import logging

import torch

from ..modeling import AnyECGConfig, AnyECGForDiagnosis

logger = logging.getLogger("anyecg.training")

__all__ = ["config_from", "copy_matching_rows", "init_model"]

_LABEL_KEYS = {"id2label", "label2id", "label_space", "label_space_name", "risk_label_space", "risk_label_space_name",
               "num_labels", "architectures", "diagnosis_pos_weight", "regression_names", "regression_target_mean",
               "regression_target_std", "auto_map", "_name_or_path", "transformers_version", "model_type", "dtype"}


def config_from(source_config, updates: dict, overrides: dict) -> AnyECGConfig:
    fields_ = set(inspect.signature(AnyECGConfig.__init__).parameters) - {"self", "kwargs"}
    base = {k: v for k, v in source_config.to_dict().items() if k in fields_ and k not in _LABEL_KEYS}
    return AnyECGConfig(**{**base, **overrides, **updates})


def init_model(model_class, cfg: dict, updates: dict):
    """`(model, source)`: a `model_class` model with the dataset's label spaces (`updates`), its backbone from the configured source.

    * `init: ecgfounder`: the original ECGFounder `.pth` (Hub repo or file), converted.
    * `init: pretrained`: a folder or Hub id of an AnyECG model (any head).
    * `init: config`: a fresh backbone from `model.config` (training from scratch, tests).

    The backbone is copied whole; head rows are copied where a condition of the new label space has the same id (or
    name) in the source head, so starting from a model with overlapping conditions keeps what it learned for them.
    """
    m = cfg["model"]
    overrides = dict(m.get("config_overrides") or {})
    if m["init"] == "config":
        config = AnyECGConfig(**{**dict(m["config"] or {}), **overrides, **updates})
        config.architectures = [model_class.__name__]
        return model_class(config), "scratch"
    if m["init"] == "ecgfounder":
        source = AnyECGForDiagnosis.from_ecgfounder(m["name_or_path"], filename=m.get("filename"),
                                                    num_leads=m.get("num_leads"), trust_checkpoint=m.get("trust_checkpoint", False))
    elif m["init"] == "pretrained":
        from transformers import AutoModel

        from ..registration import register_auto_classes

        register_auto_classes()
        source = AutoModel.from_pretrained(m["name_or_path"])
    else:
        raise ValueError(f"model.init must be 'ecgfounder', 'pretrained' or 'config', got {m['init']!r}.")
    config = config_from(source.config, updates, overrides)
    config.architectures = [model_class.__name__]
    model = model_class(config)
    backbone = source.anyecg if hasattr(source, "anyecg") else source
    model.anyecg.load_state_dict(backbone.state_dict())
    copied = copy_matching_rows(source, model)
    model._anyecg_rows_copied = copied
    logger.info("initialised from %s (%s): backbone + %d head row(s)", m["name_or_path"], m["init"], copied)
    return model, str(m["name_or_path"])


@torch.no_grad()
def copy_matching_rows(source, target) -> int:
    """Head-row transfer: copy the rows of the diagnosis classifier (and of a risk head of the same kind) whose
    condition (id, else name; case-insensitive) exists in the source head. Returns the number of rows copied."""
    n = 0
    pairs = [("classifier", "label_space")]
    if getattr(getattr(source, "risk_head", None), "linear", None) is not None and type(source.risk_head) is type(getattr(target, "risk_head", None)):
        pairs.append(("risk_head.linear", "risk_label_space"))
    for attr, space_name in pairs:
        src_mod, dst_mod = _get(source, attr), _get(target, attr)
        src_space, dst_space = getattr(source.config, space_name, None), getattr(target.config, space_name, None)
        if src_mod is None or dst_mod is None or src_space is None or dst_space is None:
            continue
        if src_mod.weight.shape[1:] != dst_mod.weight.shape[1:]:
            continue
        index: dict[str, int] = {}
        for i, c in reversed(list(enumerate(src_space))):  # first occurrence wins
            index[c.name.casefold()] = i
        for i, c in reversed(list(enumerate(src_space))):
            index[c.id.casefold()] = i  # ids take precedence over names
        for row, c in enumerate(dst_space):
            j = index.get(c.id.casefold(), index.get(c.name.casefold()))
            if j is not None:
                dst_mod.weight[row].copy_(src_mod.weight[j])
                dst_mod.bias[row].copy_(src_mod.bias[j])
                n += 1
    return n


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj
