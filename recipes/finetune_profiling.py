"""Fine-tune the holistic health-profiling model: current diagnoses, future risks and continuous traits in one
forward pass, trained with one weighted loss (`diagnosis_loss_weight`, `risk_loss_weight`, `regression_loss_weight`).

    accelerate launch recipes/finetune_profiling.py --config recipes/configs/profiling.yaml

Each part is present when the dataset has its targets: diagnosis labels, `time_*` / `event_*` risk columns, and the
regression columns named at build time (e.g. age). Regression targets are standardised with the training mean and
standard deviation (stored in the config, so outputs are in original units). The best checkpoint by validation loss
is saved to `<output_dir>/final`.
"""

from __future__ import annotations

import numpy as np

from common import Task, main, positive_weights, predictions_on_train, weights_from_counts

from anyecg_hf.modeling import AnyECGForHealthProfiling


def config_updates(data, cfg) -> dict:
    columns = data.train.column_names
    updates: dict = {}
    train = data.train.with_format("numpy")
    if data.label_space is not None and "labels" in columns:
        t = cfg["training"]
        labels = np.asarray(train["labels"], dtype=np.float32)
        mask = np.asarray(train["label_mask"], dtype=bool)
        updates["label_space"] = data.label_space
        updates["diagnosis_pos_weight"] = positive_weights(labels, mask, t["class_weighting"], t["max_pos_weight"])
    elif data.label_space is not None and "ehr_t0" in columns:  # EHR targets (anyecg build-targets): kept sparse
        from anyecg_hf.ehr.dataset import label_counts

        t = cfg["training"]
        pos, neg = label_counts(data.train)
        updates["label_space"] = data.label_space
        updates["diagnosis_pos_weight"] = weights_from_counts(pos, neg, t["class_weighting"], t["max_pos_weight"])
    if data.risk_label_space is not None and ("event_times" in columns or "ehr_t0" in columns):
        updates["risk_label_space"] = data.risk_label_space
    if data.regression_names and "regression_targets" in columns:
        y = np.asarray(train["regression_targets"], dtype=np.float64)
        m = np.asarray(train["regression_mask"], dtype=bool)
        y = np.where(m, y, np.nan)
        updates["regression_names"] = list(data.regression_names)
        updates["regression_target_mean"] = [float(v) if np.isfinite(v) else 0.0 for v in np.nanmean(y, axis=0)]
        updates["regression_target_std"] = [float(v) if np.isfinite(v) and v > 0 else 1.0 for v in np.nanstd(y, axis=0)]
    if "label_space" not in updates and "risk_label_space" not in updates and "regression_names" not in updates:
        raise ValueError(f"{cfg['data']['dataset']} has no targets (labels, time_/event_ columns or regression columns).")
    return updates


def fit_baseline(model, prepared_model, data, cfg, accelerator) -> None:
    if model.risk_head is None or model.config.risk_head_type != "cox":
        return
    preds = predictions_on_train(prepared_model, data, cfg, accelerator, TASK)
    model.fit_baseline_hazard(event_times=preds["event_times"], events=preds["events"],
                              risk_scores=preds["risk_scores"], at_risk_mask=preds["at_risk_mask"])


TASK = Task(
    name="profiling",
    model_class=AnyECGForHealthProfiling,
    best_metric="eval_loss",
    config_updates=config_updates,
    after_training=fit_baseline,
    target_keys=("labels", "label_mask", "event_times", "events", "at_risk_mask", "regression_targets", "regression_mask"),
)

if __name__ == "__main__":
    main(TASK, __doc__.splitlines()[0])
