"""Evaluation during and after fine-tuning: a split's predictions through the prediction core
(`anyecg_hf.evaluation.predictions.collect_predictions`, gathered from every process) and their metrics."""

from __future__ import annotations

from torch.utils.data import DataLoader

from ..data import ECGDataCollator
from ..ehr.dataset import condition_index
from ..evaluation.predictions import collect_predictions, evaluate_predictions
from .data import DataBundle

__all__ = ["evaluate_split", "predictions_on_train"]


def evaluate_split(model, dataloader, dataset, data: DataBundle, accelerator, n_bootstrap: int = 0, seed: int = 0):
    """Metrics (`EvaluationResult`) of the prepared `model` on one split's `dataloader` (`dataset` gives the patient
    ids for patient-level bootstrap CIs); `None` without a dataloader."""
    if dataloader is None:
        return None
    preds = collect_predictions(model, dataloader, accelerator)
    patients = list(dataset["patient_id"]) if "patient_id" in dataset.column_names else None
    return evaluate_predictions(preds, accelerator.unwrap_model(model).config, data.label_space, data.risk_label_space,
                                data.regression_names, patient_ids=patients, n_bootstrap=n_bootstrap, seed=seed)


def predictions_on_train(prepared_model, data: DataBundle, cfg: dict, accelerator, target_keys) -> dict:
    """Predictions of the (prepared) model on the training split without augmentation, gathered from every
    process (e.g. for a Cox baseline hazard)."""
    model_config = accelerator.unwrap_model(prepared_model).config
    collator = ECGDataCollator(num_samples=model_config.num_samples, num_leads=model_config.in_channels,
                               sampling_rate=model_config.sampling_rate, window=cfg["data"]["eval_window"], train=False,
                               target_keys=tuple(target_keys), ehr_index=condition_index(data.train))
    dl = DataLoader(data.train.with_format("numpy"), batch_size=cfg["training"]["batch_size"], shuffle=False,
                    collate_fn=collator, num_workers=cfg["data"]["num_workers"])
    return collect_predictions(prepared_model, accelerator.prepare(dl), accelerator, compute_loss=False)
