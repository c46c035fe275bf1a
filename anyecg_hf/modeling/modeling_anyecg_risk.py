"""Future-risk (survival) heads and the holistic health-profiling model.

* `AnyECGForRiskPrediction`: backbone + risk head over `config.risk_label_space`.
* `AnyECGForHealthProfiling`: backbone + diagnosis head (`config.label_space`) + risk head + optional regression head
  for continuous traits (`config.regression_names`), one weighted loss.

The risk head is chosen by `config.risk_head_type`:

* `"cox"`: one log relative hazard per condition (`risk_scores`), trained with the Cox partial likelihood (Efron
  ties, `survival.cox_partial_likelihood_loss`). Absolute risks need a baseline cumulative hazard, estimated after
  training with `fit_baseline_hazard` (Breslow, per condition) and stored as persistent buffers on a time grid, so
  it travels with the weights. **Until it is fitted, `cumulative_incidence` is `None`** (and a warning is logged
  once in eval mode); `model.baseline_hazard_fitted` says whether it is. A condition with nobody at risk in the
  fitting cohort gets NaN incidences.
* `"discrete"`: logistic hazards per interval of `config.risk_time_bins` (`hazard_logits`), trained with the
  discrete-time NLL; `cumulative_incidence` comes straight from `forward`, and `risk_scores` is the log cumulative
  hazard at the last horizon.

Time is in years. `cumulative_incidence[b, c, h] = 1 - S_c(config.risk_horizons[h] | x_b)` under cause-specific
hazards (death is censoring); it is not a competing-risks cumulative incidence function.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers.utils import ModelOutput, logging

from .configuration_anyecg import AnyECGConfig
from .convert_ecgfounder import DEFAULT_FILENAMES  # noqa: F401 - trust_remote_code (see configuration_anyecg)
from .ecgfounder_labels import ECGFOUNDER_LABELS  # noqa: F401 - same
from .label_space import LabelSpace
from .layers import Stage  # noqa: F401 - same
from .modeling_anyecg import AnyECGModel, AnyECGPreTrainedModel, _load_strict, masked_bce_with_logits
from .survival import (
    baseline_time_grid,
    breslow_baseline,
    cox_cumulative_incidence,
    cox_partial_likelihood_loss,
    discrete_time_cumulative_incidence,
    discrete_time_log_survival,
    discrete_time_nll,
)

try:  # transformers >= 5: init functions that skip tensors already loaded from a checkpoint
    from transformers import initialization as init
except ImportError:  # pragma: no cover - transformers 4.x
    from torch.nn import init

logger = logging.get_logger(__name__)

# Prior yearly hazard of a new condition used to initialise the discrete head's interval biases (1 %/year).
_PRIOR_YEARLY_HAZARD = 0.01


# ---------------------------------------------------------------------------------------------------- outputs
@dataclass
class AnyECGRiskOutput(ModelOutput):
    """Output of `AnyECGForRiskPrediction`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): risk loss, when `event_times` and `events` are given.
        logits (`torch.FloatTensor` of shape `(batch, n_risk)`): same tensor as `risk_scores` (for pipelines and
            `Trainer`).
        risk_scores (`torch.FloatTensor` of shape `(batch, n_risk)`): higher = higher risk. Cox head: log relative
            hazard; discrete head: log cumulative hazard at the last horizon.
        cumulative_incidence (`torch.FloatTensor` of shape `(batch, n_risk, n_horizons)`, *optional*): absolute risk
            at `config.risk_horizons` (years). `None` for a Cox head whose baseline hazard is not fitted yet.
        hazard_logits (`torch.FloatTensor` of shape `(batch, n_risk, n_bins)`, *optional*): discrete head only.
        pooler_output (`torch.FloatTensor` of shape `(batch, hidden_size)`): the ECG embedding.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): see `AnyECGModelOutput`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    risk_scores: torch.FloatTensor | None = None
    cumulative_incidence: torch.FloatTensor | None = None
    hazard_logits: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class AnyECGHealthProfilingOutput(ModelOutput):
    """Output of `AnyECGForHealthProfiling`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): weighted sum of the losses whose targets were given
            (`config.diagnosis_loss_weight * BCE + config.risk_loss_weight * risk + config.regression_loss_weight *
            MSE`).
        logits (`torch.FloatTensor` of shape `(batch, num_labels)`): diagnosis logits (alias of `diagnosis_logits`,
            so pipelines and `Trainer` treat the model like `AnyECGForDiagnosis`).
        diagnosis_logits (`torch.FloatTensor` of shape `(batch, num_labels)`): current conditions of
            `config.label_space`; `sigmoid` gives probabilities.
        risk_scores, cumulative_incidence, hazard_logits: see `AnyECGRiskOutput` (`None` when the config has no
            risk label space).
        regression_outputs (`torch.FloatTensor` of shape `(batch, n_traits)`, *optional*): continuous traits of
            `config.regression_names`, in original units.
        pooler_output, hidden_states: see `AnyECGModelOutput`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    diagnosis_logits: torch.FloatTensor | None = None
    risk_scores: torch.FloatTensor | None = None
    cumulative_incidence: torch.FloatTensor | None = None
    hazard_logits: torch.FloatTensor | None = None
    regression_outputs: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


# ------------------------------------------------------------------------------------------------------ heads
class AnyECGCoxRiskHead(nn.Module):
    """Linear log relative hazard per risk condition, plus the fitted Breslow baseline.

    Buffers (persistent, saved with the weights):
        baseline_hazard_times (`(grid,)`): time grid in years (contains every horizon used when fitting).
        baseline_cumulative_hazard (`(n_risk, grid)`): :math:`\\hat H_{0,c}(t)` on the grid.
        baseline_hazard_fitted (`(n_risk,)` bool): conditions whose baseline has been estimated.
    """

    def __init__(self, config: AnyECGConfig):
        super().__init__()
        n_risk = len(config.risk_label_space)
        grid = config.risk_baseline_grid_size
        # No bias: the partial likelihood cannot identify it; the baseline hazard absorbs it.
        self.linear = nn.Linear(config.hidden_size, n_risk, bias=False)
        self.register_buffer("baseline_hazard_times", torch.zeros(grid), persistent=True)
        self.register_buffer("baseline_cumulative_hazard", torch.zeros(n_risk, grid), persistent=True)
        self.register_buffer("baseline_hazard_fitted", torch.zeros(n_risk, dtype=torch.bool), persistent=True)

    def forward(self, pooled: torch.Tensor, horizons=None) -> dict:
        return {"risk_scores": self.linear(pooled)}

    @property
    def fitted(self) -> bool:
        return bool(self.baseline_hazard_fitted.any())

    def cumulative_incidence(self, head_out: dict, times) -> torch.Tensor | None:
        if not self.fitted:
            return None
        inc = cox_cumulative_incidence(head_out["risk_scores"], self.baseline_hazard_times, self.baseline_cumulative_hazard, times)
        return torch.where(self.baseline_hazard_fitted[None, :, None], inc, torch.full_like(inc, float("nan")))

    def loss(self, head_out: dict, event_times, events, at_risk_mask) -> torch.Tensor:
        return cox_partial_likelihood_loss(head_out["risk_scores"], event_times, events, at_risk_mask, ties_method="efron")

    @torch.no_grad()
    def set_baseline(self, grid, cumulative_hazard, fitted) -> None:
        self.baseline_hazard_times.copy_(torch.as_tensor(grid, dtype=self.baseline_hazard_times.dtype))
        self.baseline_cumulative_hazard.copy_(torch.as_tensor(cumulative_hazard, dtype=self.baseline_cumulative_hazard.dtype))
        self.baseline_hazard_fitted.copy_(torch.as_tensor(fitted, dtype=torch.bool))

    def init_buffers(self) -> None:
        init.zeros_(self.baseline_hazard_times)
        init.zeros_(self.baseline_cumulative_hazard)
        init.zeros_(self.baseline_hazard_fitted)


class AnyECGDiscreteHazardHead(nn.Module):
    """Logistic hazard per risk condition and time interval of `config.risk_time_bins`.

    `bias[c, j]` starts at the logit of a 1 %/year hazard over interval `j` (rare new conditions), so an untrained
    head already gives small, monotone cumulative incidences.
    """

    def __init__(self, config: AnyECGConfig):
        super().__init__()
        self.time_bins = tuple(config.risk_time_bins)
        self.n_risk = len(config.risk_label_space)
        self.n_bins = len(self.time_bins) - 1
        self.linear = nn.Linear(config.hidden_size, self.n_risk * self.n_bins, bias=False)
        self.bias = nn.Parameter(torch.zeros(self.n_risk, self.n_bins))

    def prior_bias(self) -> torch.Tensor:
        widths = torch.tensor(np.diff(self.time_bins), dtype=torch.float64)
        hazard = -torch.expm1(-_PRIOR_YEARLY_HAZARD * widths)
        return torch.logit(hazard).to(torch.float32).expand(self.n_risk, self.n_bins).clone()

    def forward(self, pooled: torch.Tensor, horizons) -> dict:
        z = self.linear(pooled).view(-1, self.n_risk, self.n_bins) + self.bias
        last = min(max(horizons), self.time_bins[-1])
        cum_hazard = -discrete_time_log_survival(z, self.time_bins, [last])[..., 0]
        return {"hazard_logits": z, "risk_scores": torch.log(cum_hazard.clamp_min(1e-30))}

    fitted = True  # absolute risks need no separately fitted baseline

    def cumulative_incidence(self, head_out: dict, times) -> torch.Tensor:
        return discrete_time_cumulative_incidence(head_out["hazard_logits"], self.time_bins, times)

    def loss(self, head_out: dict, event_times, events, at_risk_mask) -> torch.Tensor:
        return discrete_time_nll(head_out["hazard_logits"], event_times, events, at_risk_mask, self.time_bins)


class AnyECGRegressionHead(nn.Module):
    """Linear head for continuous traits; predicts z-scores, returned in original units via
    `config.regression_target_mean/std`."""

    def __init__(self, config: AnyECGConfig):
        super().__init__()
        n = len(config.regression_names)
        self.linear = nn.Linear(config.hidden_size, n)
        self.mean = tuple(config.regression_target_mean or [0.0] * n)
        self.std = tuple(config.regression_target_std or [1.0] * n)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(pooled)

    def to_units(self, z: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=z.dtype, device=z.device)
        std = torch.tensor(self.std, dtype=z.dtype, device=z.device)
        return mean + std * z

    def loss(self, z: torch.Tensor, targets, mask=None) -> torch.Tensor:
        r"""Mean squared error on standardised targets over the known entries:
        :math:`\frac{1}{|K|}\sum_{(i,k)\in K} (z_{ik} - (y_{ik}-\mu_k)/\sigma_k)^2`, :math:`K` = entries with a finite
        target and `mask` = 1 (removed by indexing; all masked gives an exact 0 with zero gradient)."""
        y = torch.as_tensor(targets, device=z.device).to(z.dtype)
        if y.shape != z.shape:
            raise ValueError(f"regression_targets have shape {tuple(y.shape)}; expected {tuple(z.shape)} (batch, traits).")
        keep = torch.isfinite(y)
        if mask is not None:
            m = torch.as_tensor(mask, device=z.device)
            if m.shape != z.shape:
                raise ValueError(f"regression_mask has shape {tuple(m.shape)}; expected {tuple(z.shape)}.")
            keep = keep & m.bool()
        if not bool(keep.any()):
            return z.reshape(-1)[:0].sum()
        mean = torch.tensor(self.mean, dtype=z.dtype, device=z.device).expand_as(z)
        std = torch.tensor(self.std, dtype=z.dtype, device=z.device).expand_as(z)
        return ((z[keep] - (y[keep] - mean[keep]) / std[keep]) ** 2).mean()


def _build_risk_head(config: AnyECGConfig):
    if config.risk_head_type == "cox":
        return AnyECGCoxRiskHead(config)
    head = AnyECGDiscreteHazardHead(config)
    if max(config.risk_horizons) > config.risk_time_bins[-1]:
        raise ValueError(
            f"risk_horizons {config.risk_horizons} go beyond the last risk_time_bins edge "
            f"({config.risk_time_bins[-1]} years): the discrete head cannot extrapolate."
        )
    return head


# ------------------------------------------------------------------------------------------------- base class
class AnyECGRiskPreTrainedModel(AnyECGPreTrainedModel):
    """Shared by the models with a risk head: initialisation of the heads and their buffers, baseline fitting,
    recalibration, and ECGFounder loading."""

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, AnyECGCoxRiskHead):
            module.init_buffers()
        elif isinstance(module, AnyECGDiscreteHazardHead):
            init.copy_(module.bias, module.prior_bias())

    # ------------------------------------------------------------------ risk plumbing
    def _risk_forward(self, pooled: torch.Tensor, compute_incidence: bool = True) -> dict:
        head = self.risk_head
        out = head(pooled, self.config.risk_horizons)
        out["cumulative_incidence"] = head.cumulative_incidence(out, self.config.risk_horizons) if compute_incidence else None
        if out["cumulative_incidence"] is None and compute_incidence and not self.training:
            logger.warning_once(
                "The Cox baseline hazard of this model is not fitted, so cumulative_incidence is None (risk_scores are "
                "still valid relative hazards). Call model.fit_baseline_hazard(...) on a cohort with follow-up, then "
                "save the model."
            )
        return out

    def _risk_loss(self, head_out: dict, event_times, events, at_risk_mask):
        if event_times is None and events is None:
            if at_risk_mask is not None:
                raise ValueError("at_risk_mask was given without event_times and events.")
            return None
        if event_times is None or events is None:
            raise ValueError("The risk loss needs both event_times (years) and events (1 = event, 0 = censored).")
        return self.risk_head.loss(head_out, event_times, events, at_risk_mask)

    @property
    def has_risk_head(self) -> bool:
        return getattr(self, "risk_head", None) is not None

    @property
    def baseline_hazard_fitted(self) -> bool:
        """True when absolute risks are available (discrete head, or Cox head with a fitted baseline)."""
        return self.has_risk_head and bool(self.risk_head.fitted)

    def cumulative_incidence_at(self, outputs, times) -> torch.Tensor | None:
        """Cumulative incidence `(batch, n_risk, len(times))` at arbitrary `times` (years) from a forward output
        (for risk curves). Cox: interpolated between baseline grid points, NaN beyond the grid end."""
        self._require_risk_head()
        head_out = {"risk_scores": outputs.risk_scores, "hazard_logits": getattr(outputs, "hazard_logits", None)}
        return self.risk_head.cumulative_incidence(head_out, list(times))

    def _require_risk_head(self):
        if not self.has_risk_head:
            raise ValueError("This model has no risk head (config.risk_label_space is None).")

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

    # ------------------------------------------------------------------ ECGFounder
    def _load_ecgfounder_weights(self, backbone: dict, head: dict, source: str) -> None:
        """Backbone strictly; the diagnosis classifier row by row where a condition's name (or id) matches one of the
        checkpoint's labels (exact, then case-insensitive); every other row and the risk/regression heads keep their
        fresh initialisation."""
        _load_strict(self.anyecg, backbone, source, "backbone")
        classifier = getattr(self, "classifier", None)
        if classifier is None:
            return
        weight, bias = head["weight"], head["bias"]
        if weight.shape[1] != classifier.in_features:
            raise ValueError(f"{source}: classifier input size {weight.shape[1]} != embedding size {classifier.in_features}.")
        source_space = LabelSpace.ecgfounder() if weight.shape[0] == 150 else LabelSpace.generic(weight.shape[0])
        exact = {n: i for i, n in enumerate(source_space.names)}
        folded = {n.casefold(): i for i, n in enumerate(source_space.names)}
        matched = 0
        with torch.no_grad():
            for row, cond in enumerate(self.config.label_space):
                j = exact.get(cond.name, exact.get(cond.id))
                if j is None:
                    j = folded.get(cond.name.casefold(), folded.get(cond.id.casefold()))
                if j is None:
                    continue
                classifier.weight[row].copy_(weight[j].to(classifier.weight.dtype))
                classifier.bias[row].copy_(bias[j].to(classifier.bias.dtype))
                matched += 1
        self._ecgfounder_rows_matched = matched
        logger.info(f"{source}: copied {matched}/{len(self.config.label_space)} diagnosis rows from ECGFounder.")


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


# ------------------------------------------------------------------------------------------------------ models
class AnyECGForRiskPrediction(AnyECGRiskPreTrainedModel):
    """Backbone + risk head over `config.risk_label_space` (Cox or discrete-time, by `config.risk_head_type`)."""

    def __init__(self, config: AnyECGConfig):
        super().__init__(config)
        if config.risk_label_space is None:
            raise ValueError(
                "AnyECGForRiskPrediction needs config.risk_label_space (the conditions whose future onset it "
                "predicts); e.g. AnyECGConfig(risk_label_space=LabelSpace.from_names([...]))."
            )
        self.anyecg = AnyECGModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout) if config.classifier_dropout > 0 else nn.Identity()
        self.risk_head = _build_risk_head(config)
        self.post_init()

    def forward(
        self,
        input_values: torch.Tensor,
        event_times: torch.Tensor | None = None,
        events: torch.Tensor | None = None,
        at_risk_mask: torch.Tensor | None = None,
        lead_mask: torch.Tensor | None = None,
        sample_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ):
        """
        Args:
            input_values (`torch.FloatTensor` of shape `(batch, leads, samples)`): see `AnyECGModel.forward`.
            event_times (`torch.FloatTensor` of shape `(batch, n_risk)` or `(batch,)`, *optional*): years from the
                ECG to the condition's onset (event) or to the end of follow-up (censored).
            events (`torch.Tensor` of shape `(batch, n_risk)` or `(batch,)`, *optional*): 1 = onset observed.
            at_risk_mask (`torch.BoolTensor` of shape `(batch, n_risk)`, *optional*): 1 = at risk at the ECG with known
                follow-up; 0 for prevalent cases and unknown follow-up (left out of that condition's loss). Non-finite
                times or event flags are masked too.
            lead_mask, sample_mask, output_hidden_states: see `AnyECGModel.forward`.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        base = self.anyecg(input_values, lead_mask=lead_mask, sample_mask=sample_mask,
                           output_hidden_states=output_hidden_states, return_dict=True)
        risk = self._risk_forward(self.dropout(base.pooler_output))
        loss = self._risk_loss(risk, event_times, events, at_risk_mask)
        out = AnyECGRiskOutput(
            loss=loss, logits=risk["risk_scores"], risk_scores=risk["risk_scores"],
            cumulative_incidence=risk["cumulative_incidence"], hazard_logits=risk.get("hazard_logits"),
            pooler_output=base.pooler_output, hidden_states=base.hidden_states,
        )
        return out if return_dict else out.to_tuple()


class AnyECGForHealthProfiling(AnyECGRiskPreTrainedModel):
    """One forward pass, the whole profile: current conditions (diagnosis head over `config.label_space`), future
    risk (risk head over `config.risk_label_space`, omitted when it is `None`) and optional continuous traits
    (regression head over `config.regression_names`). The classifier is named as in `AnyECGForDiagnosis`, so a
    diagnosis checkpoint initialises this model's backbone and diagnosis head."""

    def __init__(self, config: AnyECGConfig):
        super().__init__(config)
        self.anyecg = AnyECGModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout) if config.classifier_dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.risk_head = _build_risk_head(config) if config.risk_label_space is not None else None
        self.regression_head = AnyECGRegressionHead(config) if config.regression_names else None
        self.post_init()

    def forward(
        self,
        input_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        label_mask: torch.Tensor | None = None,
        event_times: torch.Tensor | None = None,
        events: torch.Tensor | None = None,
        at_risk_mask: torch.Tensor | None = None,
        regression_targets: torch.Tensor | None = None,
        regression_mask: torch.Tensor | None = None,
        lead_mask: torch.Tensor | None = None,
        sample_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ):
        """
        Args:
            input_values (`torch.FloatTensor` of shape `(batch, leads, samples)`): see `AnyECGModel.forward`.
            labels, label_mask (`(batch, num_labels)`, *optional*): diagnosis targets and known-label mask (see
                `AnyECGForDiagnosis.forward`).
            event_times, events, at_risk_mask (*optional*): risk targets (see `AnyECGForRiskPrediction.forward`).
            regression_targets (`torch.FloatTensor` of shape `(batch, n_traits)`, *optional*): trait values in
                original units (NaN = unknown).
            regression_mask (`torch.BoolTensor` of shape `(batch, n_traits)`, *optional*): 1 = known.
            lead_mask, sample_mask, output_hidden_states: see `AnyECGModel.forward`.

        The loss is the weighted sum (config `*_loss_weight`) of the parts whose targets are given; `None` if none.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        base = self.anyecg(input_values, lead_mask=lead_mask, sample_mask=sample_mask,
                           output_hidden_states=output_hidden_states, return_dict=True)
        pooled = self.dropout(base.pooler_output)
        logits = self.classifier(pooled)
        parts = []
        if labels is not None:
            pos_weight = None
            if self.config.diagnosis_pos_weight is not None:
                pos_weight = torch.tensor(self.config.diagnosis_pos_weight, dtype=logits.dtype, device=logits.device)
            parts.append(self.config.diagnosis_loss_weight * masked_bce_with_logits(logits, labels, label_mask, pos_weight))
        risk = {}
        if self.risk_head is not None:
            risk = self._risk_forward(pooled)
            risk_loss = self._risk_loss(risk, event_times, events, at_risk_mask)
            if risk_loss is not None:
                parts.append(self.config.risk_loss_weight * risk_loss)
        elif event_times is not None or events is not None:
            raise ValueError("event_times/events were given but this model has no risk head (config.risk_label_space is None).")
        regression = None
        if self.regression_head is not None:
            z = self.regression_head(pooled)
            regression = self.regression_head.to_units(z)
            if regression_targets is not None:
                parts.append(self.config.regression_loss_weight * self.regression_head.loss(z, regression_targets, regression_mask))
        elif regression_targets is not None:
            raise ValueError("regression_targets were given but this model has no regression head (config.regression_names is None).")
        loss = None
        if parts:
            loss = parts[0]
            for p in parts[1:]:
                loss = loss + p
        out = AnyECGHealthProfilingOutput(
            loss=loss, logits=logits, diagnosis_logits=logits, risk_scores=risk.get("risk_scores"),
            cumulative_incidence=risk.get("cumulative_incidence"), hazard_logits=risk.get("hazard_logits"),
            regression_outputs=regression, pooler_output=base.pooler_output, hidden_states=base.hidden_states,
        )
        return out if return_dict else out.to_tuple()


for _cls in (AnyECGForRiskPrediction, AnyECGForHealthProfiling):
    _cls.register_for_auto_class("AutoModel")
