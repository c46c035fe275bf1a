"""Saving a fine-tuned model as a complete folder (weights, config, feature extractor, label spaces, evaluation
report, model card, training config) and pushing it to the Hub."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import yaml

from ..evaluation import write_model_card, write_report
from ..evaluation.model_card import public_name

logger = logging.getLogger("anyecg.training")

__all__ = ["push_to_hub", "save_model"]


def save_model(model, fe, folder: Path, cfg: dict, recipe: str, result, split: str, source: str, steps: int,
               weights: dict | None = None) -> None:
    """Write a complete model folder: weights, config, feature extractor, label spaces, evaluation report, model
    card (README.md) and the training config. `pipeline(model=folder)` and `AutoModel.from_pretrained` load it.

    `weights` is the full state dict (`accelerator.get_state_dict`, gathered under FSDP); default the model's own."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), state_dict=weights)
    fe.save_pretrained(str(folder))
    model.config.label_space.save(str(folder / "label_space.csv"))
    if getattr(model.config, "risk_label_space", None) is not None:
        model.config.risk_label_space.save(str(folder / "risk_label_space.csv"))
    (folder / "training_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    diag = None if result is None else result.diagnosis_report
    risk = None if result is None else result.risk_report
    dataset_name = f"{public_name(cfg['data']['dataset'])} [{split}]"  # the card and report name no local path
    if diag is not None or risk is not None:
        write_report(folder / "evaluation", diagnosis_report=diag, risk_report=risk, dataset_name=dataset_name)
    if result is not None and result.regression_table is not None and len(result.regression_table):
        (folder / "evaluation").mkdir(exist_ok=True)
        result.regression_table.to_csv(folder / "evaluation" / "regression.csv", index=False)
    t = cfg["training"]
    training = (
        f"Fine-tuned with `recipes/finetune_{recipe}.py` from `{public_name(source)}`: {steps} optimizer steps, strategy "
        f"`{t['strategy']}`, learning rate {t['learning_rate']:g} ({t['lr_scheduler']} schedule), global batch "
        f"{t['batch_size']} x {t['gradient_accumulation_steps']} accumulation, seed {t['seed']}, class weighting "
        f"`{t['class_weighting']}`, augmentations {json.dumps(cfg['augmentation']) if cfg['augmentation'] else 'none'}. "
        f"Dataset: `{public_name(cfg['data']['dataset'])}`. The full configuration is in `training_config.yaml`."
    )
    base = source if source not in ("scratch",) and not os.path.exists(str(source)) else None
    name = cfg["hub"].get("repo_id") or f"anyecg-{recipe}-{Path(t['output_dir']).name}"
    write_model_card(folder, config=model.config, diagnosis_report=diag, risk_report=risk, base_model=base,
                     model_name=name, training_data=training, dataset_name=dataset_name, overwrite=True)


def push_to_hub(folder: Path, hub: dict) -> str:
    """Upload the final folder (model, feature extractor, label spaces, model card, evaluation) to the Hub."""
    from huggingface_hub import HfApi

    if not hub.get("repo_id"):
        raise ValueError("hub.repo_id is required to push to the Hub.")
    api = HfApi(token=hub.get("token"))
    api.create_repo(hub["repo_id"], private=hub.get("private", True), exist_ok=True)
    api.upload_folder(repo_id=hub["repo_id"], folder_path=str(folder), commit_message="AnyECG fine-tuned model")
    logger.info("pushed %s to %s", folder, hub["repo_id"])
    return hub["repo_id"]
