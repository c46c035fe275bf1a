"""Fine-tune an ECG foundation model to predict the future onset of conditions (survival: Cox or discrete time).

    accelerate launch recipes/finetune_risk.py --config recipes/configs/risk.yaml

The dataset needs `time_<condition>` / `event_<condition>` columns in its label table (years from the ECG to onset
or censoring); prevalent cases and unknown follow-up are masked (`at_risk_mask = 0`). The Cox head
(`model.config_overrides.risk_head_type: cox`, Efron ties) gets its Breslow baseline hazard fitted on the training
split after training, so the saved model gives absolute risks at `risk_horizons`; the discrete-time head gives them
directly. The best checkpoint by validation mean Harrell C is saved to `<output_dir>/final`.
"""

from __future__ import annotations

from common import Task, main, predictions_on_train

from anyecg_hf.modeling import AnyECGForRiskPrediction


def config_updates(data, cfg) -> dict:
    if data.risk_label_space is None or "event_times" not in data.train.column_names:
        raise ValueError(f"{cfg['data']['dataset']} has no risk targets: its label table needs time_<condition> and "
                         "event_<condition> columns.")
    return {"risk_label_space": data.risk_label_space}


def fit_baseline(model, prepared_model, data, cfg, accelerator) -> None:
    """Cox head: Breslow baseline cumulative hazard from the training split (no augmentation)."""
    if getattr(model.config, "risk_head_type", "cox") != "cox":
        return
    preds = predictions_on_train(prepared_model, data, cfg, accelerator, TASK)
    model.fit_baseline_hazard(event_times=preds["event_times"], events=preds["events"],
                              risk_scores=preds["risk_scores"], at_risk_mask=preds["at_risk_mask"])


TASK = Task(
    name="risk",
    model_class=AnyECGForRiskPrediction,
    best_metric="mean_harrell_c",
    config_updates=config_updates,
    after_training=fit_baseline,
    target_keys=("event_times", "events", "at_risk_mask"),
)

if __name__ == "__main__":
    main(TASK, __doc__.splitlines()[0])
