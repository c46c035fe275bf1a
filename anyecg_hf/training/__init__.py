"""Reusable parts of fine-tuning, for the recipes (`recipes/finetune_*.py`, which read top to bottom) and for your
own training loops:

* `config`: the recipes' config schema (`DEFAULTS`), `load_config(path, overrides)`, `parse_args`;
* `data`: `load_data`, `prepare_splits`, `make_dataloaders`, class weights (`positive_weights`);
* `model_init`: `init_model` (ECGFounder / a saved model / a fresh config) with head-row transfer
  (`copy_matching_rows`);
* `optim`: `parameter_groups` (full, linear probe, layer-wise learning-rate decay);
* `state`: `TrainState` (exact resume), `save_checkpoint`, `resolve_resume`, `record_eval` (best checkpoint);
* `evaluate`: `evaluate_split`, `predictions_on_train`;
* `saving`: `save_model` (folder with model card and evaluation), `push_to_hub`.
"""

from .config import DEFAULTS, load_config, merge_config, parse_args
from .data import (DataBundle, feature_extractor_for, load_data, make_dataloaders, positive_weights,
                   positive_weights_from_counts, prepare_splits)
from .evaluate import evaluate_split, predictions_on_train
from .model_init import config_from, copy_matching_rows, init_model
from .optim import parameter_groups
from .saving import push_to_hub, save_model
from .state import TrainState, flat_config, list_checkpoints, metric_mode, record_eval, resolve_resume, save_checkpoint

__all__ = [
    "DEFAULTS",
    "DataBundle",
    "TrainState",
    "config_from",
    "copy_matching_rows",
    "evaluate_split",
    "feature_extractor_for",
    "flat_config",
    "init_model",
    "list_checkpoints",
    "load_config",
    "load_data",
    "make_dataloaders",
    "merge_config",
    "metric_mode",
    "parameter_groups",
    "parse_args",
    "positive_weights",
    "positive_weights_from_counts",
    "predictions_on_train",
    "prepare_splits",
    "push_to_hub",
    "record_eval",
    "resolve_resume",
    "save_checkpoint",
    "save_model",
]
