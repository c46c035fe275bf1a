"""Dataset evaluation predictions: run a model over a dataset split (through the prediction core's named outputs and
window aggregation) and evaluate it with `anyecg_hf.evaluation` (the recipes' periodic evaluation, `anyecg
evaluate`).

The model's conditions are matched to the dataset's by id, then by (code system, code), then by name
(`anyecg_hf.evaluation.label_matching`); only matched conditions are scored, the unmatched ones are listed
(`EvaluationResult.label_match`), never scored against zeros. A loss is computed only when the dataset's label
columns are the model's outputs in order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from ..modeling.label_space import LabelSpace
from ..prediction import MODEL_INPUT_KEYS, aggregate_windows
from ..runtime.precision import autocast

logger = logging.getLogger(__name__)

# the model's named outputs under the names of this module's results (`diagnosis_probs` predates them)
_PRED_NAMES = {"probabilities": "diagnosis_probs"}
TARGET_KEYS = ("labels", "label_mask", "event_times", "events", "at_risk_mask", "regression_targets", "regression_mask")


def align_label_space(model_space: LabelSpace | None, data_space: LabelSpace | None) -> np.ndarray | None:
    """For each model condition, the dataset column holding it (-1 when the dataset lacks it), as paired by
    `anyecg_hf.evaluation.label_matching.match_label_spaces` (id, then code, then name)."""
    if model_space is None or data_space is None:
        return None
    from .label_matching import match_label_spaces

    return match_label_spaces(model_space, data_space).model_to_data()


def remap_columns(values: np.ndarray | None, mask: np.ndarray | None, index: np.ndarray, fill=0.0):
    """Reorder dataset target columns to the model's conditions (`align_label_space`); absent ones are masked."""
    if values is None or index is None:
        return None, None
    n = values.shape[0]
    out = np.full((n, len(index)) + values.shape[2:], fill, dtype=np.float64)
    out_mask = np.zeros((n, len(index)), bool)
    ok = index >= 0
    out[:, ok] = values[:, index[ok]]
    out_mask[:, ok] = True if mask is None else mask[:, index[ok]]
    return out, out_mask


@torch.no_grad()
def collect_predictions(model, dataloader, accelerator=None, compute_loss: bool = True, progress: bool = False,
                        precision=None) -> dict:
    """Run `model` (eval mode) over `dataloader` (batches from `ECGDataCollator`) and gather, in dataset order:

    `diagnosis_probs` (sigmoid of the diagnosis logits), `risk_scores`, `cumulative_incidence`,
    `regression_outputs` (whichever the model returns), the targets present in the batches, and `loss` (mean of the
    batch losses when targets are given). Windows of one record (`window_to_record`, from `window="all"`) are
    averaged. With an `accelerator`, results are gathered from every process (`gather_for_metrics`).
    `precision` (a dtype from `runtime.precision.resolve_precision`, default None = float32) runs the model under
    autocast (an Accelerate-prepared model already runs in the accelerator's mixed precision).
    """
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    was_training = model.training
    model.eval()
    got: dict[str, list] = {}
    losses = []
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    try:
        iterator = dataloader
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(dataloader, desc="evaluating", disable=accelerator is not None and not accelerator.is_local_main_process)
        for batch in iterator:
            owners = batch.pop("window_to_record", None)
            inputs = {k: batch[k].to(device) for k in MODEL_INPUT_KEYS if k in batch}
            targets = {k: batch[k].to(device) for k in TARGET_KEYS if k in batch and isinstance(batch[k], torch.Tensor)}
            kwargs = dict(inputs)
            if compute_loss:
                kwargs.update(_loss_targets(unwrapped, targets))
            with autocast(precision, device):  # `precision`: None (fp32) or a dtype from resolve_precision
                out = model(**kwargs)
            if compute_loss and getattr(out, "loss", None) is not None:
                losses.append(out.loss.detach().float().reshape(1))
            named = unwrapped.named_outputs(out)
            preds = {_PRED_NAMES.get(k, k): v.float() for k, v in named.items() if v is not None}  # bf16 -> fp32
            if owners is not None:
                owners = owners.to(device)
                n = int(owners.max()) + 1
                index = owners.cpu().numpy()
                preds = {k: torch.from_numpy(aggregate_windows(v.cpu().numpy(), index, num_records=n).astype(np.float32)).to(device)
                         for k, v in preds.items()}
                first = torch.full((n,), -1, dtype=torch.long, device=device)
                first.scatter_reduce_(0, owners, torch.arange(len(owners), device=device), reduce="amin", include_self=False)
                targets = {k: v[first] for k, v in targets.items()}
            row = {**preds, **{f"target_{k}": v.float() for k, v in targets.items()}}
            if accelerator is not None:
                row = accelerator.gather_for_metrics(row)
            for k, v in row.items():
                got.setdefault(k, []).append(v.cpu().numpy())
    finally:
        model.train(was_training)
    result = {k.removeprefix("target_"): np.concatenate(v) for k, v in got.items()}
    for k in ("label_mask", "at_risk_mask", "regression_mask"):
        if k in result:
            result[k] = result[k] > 0.5
    if losses:
        loss = torch.cat(losses).mean()
        if accelerator is not None:
            loss = accelerator.reduce(loss.to(device), reduction="mean")
        result["loss"] = float(loss)
    return result


def _loss_targets(model, targets: dict) -> dict:
    """The targets this model's forward takes (a risk-only model gets no diagnosis labels, ...)."""
    keep = {}
    heads = model.heads
    n_out = getattr(getattr(model, "config", None), "num_labels", None)
    if heads["diagnosis"] and "labels" in targets and targets["labels"].shape[-1] == n_out:
        # a dataset with another label space (other width) has no loss: callers check the order (`is_identity`)
        keep["labels"], keep["label_mask"] = targets["labels"], targets.get("label_mask")
    if heads["risk"] and "event_times" in targets:
        keep.update(event_times=targets["event_times"], events=targets["events"], at_risk_mask=targets.get("at_risk_mask"))
    if heads["regression"] and "regression_targets" in targets:
        keep.update(regression_targets=targets["regression_targets"], regression_mask=targets.get("regression_mask"))
    return {k: v for k, v in keep.items() if v is not None}


@dataclass
class EvaluationResult:
    """Metrics (flat dict of floats, for logging and checkpoint selection) and the evaluation module's reports."""

    metrics: dict = field(default_factory=dict)
    diagnosis_report: object = None
    risk_report: object = None
    regression_table: object = None
    label_match: object = None  # `LabelMatch` of the diagnosis evaluation: matched and unmatched conditions


def evaluate_predictions(preds: dict, config, data_label_space=None, data_risk_label_space=None, data_regression_names=None,
                         patient_ids=None, n_bootstrap: int = 0, seed: int = 0, subgroups=None,
                         label_match=None, validation_preds: dict | None = None) -> EvaluationResult:
    """Evaluate gathered predictions (`collect_predictions`) against the dataset's targets.

    Args:
        preds (`dict`): output of `collect_predictions`.
        config (`AnyECGConfig`): the model's config (its label spaces, horizons and regression names).
        data_label_space, data_risk_label_space, data_regression_names: what the dataset's target columns follow
            (`get_label_space(ds)`, ...); `None` takes the model's.
        patient_ids (*optional*): one per row, for patient-level bootstrap resampling.
        n_bootstrap (`int`): bootstrap resamples of the CIs (0 = point estimates only, for periodic evaluation).
        subgroups (*optional*): passed to `evaluate_diagnosis` (e.g. `{"sex": [...]}`).
        label_match (`LabelMatch`, *optional*): how the dataset's label columns pair with the model's outputs
            (default: `match_label_spaces(config.label_space, data_label_space)`). Only matched pairs are scored.
        validation_preds (`dict`, *optional*): `collect_predictions` on the dataset's validation split (same label
            space); each condition's operating threshold (Youden's J) is chosen there, so the reported sensitivity and
            specificity are not optimistic. Without it, or where the validation split has no positive or no
            negative, the threshold is chosen on the evaluated data and marked "optimistic".

    Returns:
        `EvaluationResult` with metrics `eval_loss`, `macro_auroc`, `macro_auprc`, `micro_auroc`, `mean_harrell_c`,
        `mean_uno_c`, `regression_mae` (those that apply).
    """
    from ..evaluation import evaluate_diagnosis, evaluate_risk

    res = EvaluationResult()
    if "loss" in preds:
        res.metrics["eval_loss"] = preds["loss"]
    if "diagnosis_probs" in preds and "labels" in preds:
        from .label_matching import match_label_spaces
        from .thresholds import thresholds_on

        match = label_match or match_label_spaces(config.label_space, data_label_space or config.label_space)
        res.label_match = match
        if not match.is_identity:
            logger.warning("%s", match.summary())
        if match.pairs:
            cols, outs = match.data_index, match.model_index
            mask = preds.get("label_mask")
            space = LabelSpace([match.data_space[j] for j in cols], name=getattr(match.data_space, "name", None))
            thresholds, split = "youden", None
            if validation_preds is not None and "diagnosis_probs" in validation_preds and "labels" in validation_preds:
                vmask = validation_preds.get("label_mask")
                thresholds = thresholds_on(validation_preds["labels"][:, cols],
                                           validation_preds["diagnosis_probs"][:, outs],
                                           None if vmask is None else vmask[:, cols])
                split = "validation"
            res.diagnosis_report = evaluate_diagnosis(
                preds["labels"][:, cols], preds["diagnosis_probs"][:, outs], space,
                label_mask=None if mask is None else mask[:, cols], patient_ids=patient_ids, n_bootstrap=n_bootstrap,
                seed=seed, subgroups=subgroups, threshold_method=thresholds, threshold_split=split)
            table = res.diagnosis_report.table
            table.insert(4, "model_id", [match.model_space[i].id for i in outs])
            table.insert(5, "matched_by", [how for _, _, how in match.pairs])
            s = res.diagnosis_report.summary
            res.metrics.update({k: float(s[k]) for k in ("macro_auroc", "macro_auprc", "micro_auroc") if k in s})
    risk_space = getattr(config, "risk_label_space", None)
    if "risk_scores" in preds and "event_times" in preds and risk_space is not None:
        index = align_label_space(risk_space, data_risk_label_space or risk_space)
        t, m = remap_columns(preds["event_times"], preds.get("at_risk_mask"), index, fill=np.nan)
        e, _ = remap_columns(preds["events"], None, index)
        m = m & np.isfinite(t) & (np.nan_to_num(t, nan=0.0) > 0)  # evaluation needs follow-up > 0
        t = np.where(m, t, 1.0)
        res.risk_report = evaluate_risk(t, e, preds["risk_scores"], preds.get("cumulative_incidence"),
                                        horizons=list(config.risk_horizons), label_space=risk_space, at_risk_mask=m,
                                        n_bootstrap=n_bootstrap, seed=seed, patient_ids=patient_ids)
        s = res.risk_report.summary
        res.metrics.update({k: float(s[k]) for k in ("mean_harrell_c", "mean_uno_c") if k in s})
    names = getattr(config, "regression_names", None)
    if "regression_outputs" in preds and "regression_targets" in preds and names:
        import pandas as pd

        data_names = list(data_regression_names or names)
        rows = []
        errs = []
        for k, name in enumerate(names):
            if name not in data_names:
                continue
            j = data_names.index(name)
            y = preds["regression_targets"][:, j]
            known = preds["regression_mask"][:, j] if "regression_mask" in preds else np.isfinite(y)
            p = preds["regression_outputs"][:, k]
            err = np.abs(p[known] - y[known])
            r = float(np.corrcoef(p[known], y[known])[0, 1]) if known.sum() > 2 and np.std(y[known]) > 0 and np.std(p[known]) > 0 else float("nan")
            rows.append({"name": name, "n": int(known.sum()), "mae": float(err.mean()) if err.size else float("nan"),
                         "rmse": float(np.sqrt((err**2).mean())) if err.size else float("nan"), "pearson_r": r})
            if err.size:
                errs.append(float(err.mean()))
        res.regression_table = pd.DataFrame(rows)
        if errs:
            res.metrics["regression_mae"] = float(np.mean(errs))
    return res
