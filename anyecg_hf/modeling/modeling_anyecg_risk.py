"""The future-risk (survival) model and the holistic health-profiling model (their heads are in `risk_heads.py`,
baseline fitting and recalibration in `recalibration.py`).

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

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput, logging

from .breslow import breslow_baseline  # noqa: F401 - trust_remote_code (see configuration_anyecg)
from .configuration_anyecg import AnyECGConfig
from .convert_ecgfounder import DEFAULT_FILENAMES  # noqa: F401 - trust_remote_code (see configuration_anyecg)
from .ecgfounder_labels import ECGFOUNDER_LABELS  # noqa: F401 - same
from .label_space import LabelSpace
from .layers import Stage  # noqa: F401 - same
from .modeling_anyecg import AnyECGModel, AnyECGPreTrainedModel, _load_strict, masked_bce_with_logits
from .recalibration import RiskRecalibrationMixin
from .risk_heads import AnyECGCoxRiskHead, AnyECGDiscreteHazardHead, AnyECGRegressionHead, _build_risk_head  # noqa: F401
from .survival import cox_partial_likelihood_loss  # noqa: F401 - trust_remote_code (see configuration_anyecg)

try:  # transformers >= 5: init functions that skip tensors already loaded from a checkpoint
    from transformers import initialization as init
except ImportError:  # pragma: no cover - transformers 4.x
    from torch.nn import init

logger = logging.get_logger(__name__)


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


# ------------------------------------------------------------------------------------------------- base class
class AnyECGRiskPreTrainedModel(RiskRecalibrationMixin, AnyECGPreTrainedModel):
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
