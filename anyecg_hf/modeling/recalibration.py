"""Fitting a risk model's baseline hazard and recalibrating it to a local cohort (without retraining the backbone).
A mixin of `AnyECGRiskPreTrainedModel`: it uses the model's backbone, heads and config."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .risk_heads import AnyECGCoxRiskHead
from .breslow import baseline_time_grid, breslow_baseline


class RiskRecalibrationMixin:
    """`fit_baseline_hazard` (Breslow, Cox head) and `recalibrate` (baseline + decision thresholds)."""

    # ------------------------------------------------------------------ baseline hazard / recalibration
    @torch.no_grad()
    def _collect(self, dataloader, want_diagnosis: bool = False) -> dict:
        """Run the model over a dataloader of dict batches and gather scores and targets as numpy arrays."""
        was_training = self.training
        self.eval()
        keys = ("event_times", "events", "at_risk_mask", "labels", "label_mask")
        got: dict[str, list] = {k: [] for k in ("risk_scores", "diagnosis_probs", *keys)}
        try:
            for i, batch in enumerate(dataloader):
                if not hasattr(batch, "keys") or "input_values" not in batch:
                    raise ValueError(f"dataloader batch {i} must be a dict with 'input_values' (and 'event_times', 'events').")
                inputs = {k: batch[k].to(self.device) for k in ("input_values", "lead_mask", "sample_mask") if batch.get(k) is not None}
                # backbone and heads only: absolute risks are not needed (and may not be fitted yet)
                pooled = self.dropout(self.anyecg(**inputs, return_dict=True).pooler_output)
                out = {}
                if self.has_risk_head:
                    out["risk_scores"] = self.risk_head(pooled, self.config.risk_horizons)["risk_scores"]
                if want_diagnosis and self.heads["diagnosis"]:
                    out["diagnosis_logits"] = self.classifier(pooled)
                named = self.named_outputs(out)
                if self.has_risk_head:
                    got["risk_scores"].append(named["risk_scores"].cpu().numpy())
                if "diagnosis_logits" in out:
                    got["diagnosis_probs"].append(named["probabilities"].cpu().numpy())
                for k in keys:
                    if batch.get(k) is not None:
                        got[k].append(np.asarray(torch.as_tensor(batch[k]).cpu().numpy(), dtype=np.float64))
        finally:
            self.train(was_training)
        return {k: (np.concatenate(v) if v else None) for k, v in got.items()}

    @torch.no_grad()
    def fit_baseline_hazard(
        self,
        event_times=None,
        events=None,
        risk_scores=None,
        at_risk_mask=None,
        dataloader=None,
        max_time: float | None = None,
    ) -> dict:
        r"""Estimate and store the Breslow baseline cumulative hazard of every risk condition (Cox head).

        .. math:: \hat H_{0,c}(t) = \sum_{\xi_k \le t} d_k \Big/ \sum_{j \in A_c,\ t_j \ge \xi_k} e^{\eta_{jc}}

        over the people at risk for condition :math:`c` (`at_risk_mask`), evaluated on a grid of
        `config.risk_baseline_grid_size` points from 0 to `max(max_time, risk_horizons)` years that contains every
        horizon exactly, and stored in persistent buffers (saved by `save_pretrained`). Fit on a cohort the model did
        not train on if possible (training scores are over-confident). The backbone is not changed.

        Args:
            event_times, events, at_risk_mask: `(n, n_risk)` (or `(n,)` times/events shared by all conditions), as in
                `forward`.
            risk_scores (`(n, n_risk)`): this model's `risk_scores` for the same people. Give either these arrays or
                `dataloader`.
            dataloader: iterable of dict batches with `input_values`, `event_times`, `events` and optionally
                `at_risk_mask`, `lead_mask`, `sample_mask`; the model is run in eval mode to get the scores.
            max_time (`float`, *optional*): grid end (years) when curves beyond the last horizon are wanted.

        Returns:
            `dict` with `n_at_risk` and `n_events` (lists, one per condition) and `max_follow_up` (years).
        """
        self._require_risk_head()
        if not isinstance(self.risk_head, AnyECGCoxRiskHead):
            raise ValueError(
                "fit_baseline_hazard applies to the Cox head only; the discrete head (risk_head_type='discrete') "
                "gives absolute risks directly."
            )
        if dataloader is not None:
            if risk_scores is not None:
                raise ValueError("Pass either risk_scores (with event_times/events) or a dataloader, not both.")
            got = self._collect(dataloader)
            risk_scores, event_times, events = got["risk_scores"], got["event_times"], got["events"]
            at_risk_mask = got["at_risk_mask"]
        if risk_scores is None or event_times is None or events is None:
            raise ValueError("fit_baseline_hazard needs event_times, events and risk_scores (or a dataloader yielding them).")
        scores = np.asarray(torch.as_tensor(risk_scores).detach().cpu().numpy(), dtype=np.float64)
        n_risk = self.risk_head.linear.out_features
        if scores.ndim != 2 or scores.shape[1] != n_risk:
            raise ValueError(f"risk_scores must be (n, {n_risk}), got shape {scores.shape}.")
        times = np.asarray(torch.as_tensor(event_times).detach().cpu().numpy(), dtype=np.float64)
        ev = np.asarray(torch.as_tensor(events).detach().cpu().numpy(), dtype=np.float64)
        mask = None if at_risk_mask is None else np.asarray(torch.as_tensor(at_risk_mask).detach().cpu().numpy(), dtype=np.float64)
        grid = baseline_time_grid(self.config.risk_horizons, self.config.risk_baseline_grid_size, max_time)
        cum, fitted, n_events = breslow_baseline(scores, times, ev, mask, grid)
        self.risk_head.set_baseline(grid, cum, fitted)

        times_b = np.broadcast_to(times[:, None] if times.ndim == 1 else times, scores.shape)
        known = np.isfinite(times_b) if mask is None else np.isfinite(times_b) & (np.nan_to_num(mask) > 0)
        max_follow_up = float(times_b[known].max()) if known.any() else float("nan")
        names = self.config.risk_label_space.ids
        if not fitted.all():
            warnings.warn(
                f"No one at risk for {int((~fitted).sum())} risk condition(s) ({', '.join(np.array(names)[~fitted][:5])}"
                f"{' ...' if (~fitted).sum() > 5 else ''}): their cumulative incidence will be NaN.", stacklevel=3,
            )
        no_events = fitted & (n_events == 0)
        if no_events.any():
            warnings.warn(
                f"{int(no_events.sum())} risk condition(s) have no event in the fitting cohort: their baseline hazard "
                "is 0 and so is their cumulative incidence.", stacklevel=3,
            )
        if np.isfinite(max_follow_up) and max_follow_up < grid[-1]:
            warnings.warn(
                f"Longest follow-up in the fitting cohort is {max_follow_up:.3g} years, shorter than the grid end "
                f"({grid[-1]:.3g} years): the baseline hazard is held flat after it, so later absolute risks are "
                "underestimated.", stacklevel=3,
            )
        return {"n_at_risk": [int(v) for v in known.sum(0)], "n_events": [int(v) for v in n_events], "max_follow_up": max_follow_up}

    def recalibrate(
        self,
        dataloader=None,
        *,
        event_times=None,
        events=None,
        risk_scores=None,
        at_risk_mask=None,
        diagnosis_probs=None,
        labels=None,
        label_mask=None,
        refit_baseline: bool = True,
        update_thresholds: bool = True,
        threshold_method: str = "youden",
        max_time: float | None = None,
    ) -> dict:
        """Adapt the model to a local cohort without retraining the backbone.

        * Cox head: refit the Breslow baseline hazard on the local cohort (`fit_baseline_hazard`), so absolute risks
          match local incidence while the relative hazards stay those learned in training. The discrete head has no
          separate baseline; it is left unchanged (a warning says so).
        * Diagnosis head (`AnyECGForHealthProfiling`): set each condition's decision threshold in
          `config.label_space` from the local labels: `"youden"` (max sensitivity + specificity - 1) or `"f1"`.
          Conditions without both positives and negatives locally keep their threshold.

        Give a `dataloader` of dict batches (`input_values`, `event_times`, `events`, `at_risk_mask`, `labels`,
        `label_mask`) or the arrays (`risk_scores`, `diagnosis_probs` = sigmoid of the diagnosis logits). Save the
        model afterwards to keep the new baseline and thresholds.

        Returns:
            `dict` with `baseline` (what `fit_baseline_hazard` returned, or `None`) and `thresholds`
            (`{condition id: (old, new)}` for the conditions that changed).
        """
        report = {"baseline": None, "thresholds": {}}
        if dataloader is not None:
            got = self._collect(dataloader, want_diagnosis=True)
            risk_scores, event_times, events, at_risk_mask = got["risk_scores"], got["event_times"], got["events"], got["at_risk_mask"]
            diagnosis_probs, labels, label_mask = got["diagnosis_probs"], got["labels"], got["label_mask"]
        if refit_baseline and self.has_risk_head and event_times is not None:
            if isinstance(self.risk_head, AnyECGCoxRiskHead):
                report["baseline"] = self.fit_baseline_hazard(event_times, events, risk_scores, at_risk_mask, max_time=max_time)
            else:
                warnings.warn("recalibrate: the discrete-time risk head has no separate baseline hazard to refit.", stacklevel=2)
        if update_thresholds and labels is not None and hasattr(self, "classifier"):
            if diagnosis_probs is None:
                raise ValueError("recalibrate: thresholds need diagnosis_probs (or a dataloader) with the labels.")
            space = self.config.label_space
            new = _select_thresholds(np.asarray(diagnosis_probs, float), np.asarray(labels, float),
                                     None if label_mask is None else np.asarray(label_mask, float), space.thresholds, threshold_method)
            changed = {c.id: (c.threshold, t) for c, t in zip(space, new) if t != c.decision_threshold}
            if changed:
                self.config.label_space = space.with_thresholds(
                    [t if c.id in changed else c.threshold for c, t in zip(space, new)]
                )
            report["thresholds"] = changed
        return report


def _select_thresholds(probs, labels, mask, current, method: str) -> list[float]:
    from sklearn.metrics import precision_recall_curve, roc_curve

    if method not in ("youden", "f1"):
        raise ValueError(f"threshold_method must be 'youden' or 'f1', got {method!r}.")
    if probs.shape != labels.shape:
        raise ValueError(f"diagnosis_probs {probs.shape} and labels {labels.shape} differ in shape.")
    out = []
    for c in range(probs.shape[1]):
        keep = np.isfinite(labels[:, c]) & np.isfinite(probs[:, c])
        if mask is not None:
            keep &= mask[:, c] > 0
        y, p = labels[keep, c] > 0.5, probs[keep, c]
        if y.all() or not y.any():
            out.append(current[c])
            continue
        if method == "youden":
            fpr, tpr, thr = roc_curve(y, p)
            ok = np.isfinite(thr)
            best = thr[ok][np.argmax((tpr - fpr)[ok])]
        else:
            prec, rec, thr = precision_recall_curve(y, p)
            f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
            best = thr[np.argmax(f1)]
        out.append(float(min(max(best, 1e-6), 1 - 1e-6)))
    return out
