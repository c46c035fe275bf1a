"""The risk heads of the AnyECG models, chosen by `config.risk_head_type`: Cox (log relative hazards; absolute risks
from a Breslow baseline cumulative hazard stored as buffers, so it travels with the weights) and discrete time
(logistic hazards per interval of `config.risk_time_bins`), plus the regression head for continuous traits. Time is
in years."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .configuration_anyecg import AnyECGConfig
from .breslow import cox_cumulative_incidence
from .survival import (
    cox_partial_likelihood_loss,
    discrete_time_cumulative_incidence,
    discrete_time_log_survival,
    discrete_time_nll,
)

try:  # transformers >= 5: init functions that skip tensors already loaded from a checkpoint
    from transformers import initialization as init
except ImportError:  # pragma: no cover - transformers 4.x
    from torch.nn import init

# Prior yearly hazard of a new condition used to initialise the discrete head's interval biases (1 %/year).
_PRIOR_YEARLY_HAZARD = 0.01


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
