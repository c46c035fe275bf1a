"""Per-lead attributions: which leads and which moments of an ECG drive a model's output for one condition.

Two input-gradient methods, both giving one value per lead and sample of the model input (so per-lead maps, which
Grad-CAM on the last stage cannot give: that map has no lead axis, only 20 time steps):

* `integrated_gradients` (Sundararajan et al., 2017):
  .. math:: \\mathrm{IG}_i(x) = (x_i - x'_i) \\int_0^1 \\frac{\\partial F(x' + \\alpha (x - x'))}{\\partial x_i} d\\alpha

  approximated with the trapezoid rule on `steps` intervals. Completeness, :math:`\\sum_i \\mathrm{IG}_i = F(x) -
  F(x')`, holds up to the discretisation error, returned as `delta` so a caller can raise `steps` when it is large.
  The baseline :math:`x'` is all zeros: after the feature extractor's z-score, zero is the mean level of the
  recording and what a missing lead looks like.
* `input_x_gradient`: :math:`x_i \\, \\partial F / \\partial x_i`, one backward pass (cheap, noisier).

:math:`F` is the condition's diagnosis logit (not the probability, which saturates) or its risk score.
Captum implements the same methods; they are short enough here to avoid a dependency for one plot.
"""

from __future__ import annotations

import difflib

import numpy as np
import torch

__all__ = ["explain_record", "input_x_gradient", "integrated_gradients", "lead_importance", "resolve_condition"]


def resolve_condition(config, condition, output: str = "diagnosis") -> int:
    """Index of `condition` (an int index, or a condition id, name or code; names case-insensitive) in the
    diagnosis (`output="diagnosis"`) or risk (`"risk"`) label space. Raises `ValueError` listing close matches."""
    space = config.label_space if output == "diagnosis" else config.risk_label_space
    if space is None:
        raise ValueError("This model has no risk head (config.risk_label_space is None).")
    if isinstance(condition, (int, np.integer)):
        if not 0 <= int(condition) < len(space):
            raise ValueError(f"Condition index {condition} is outside 0..{len(space) - 1}.")
        return int(condition)
    text = str(condition).strip()
    for i, c in enumerate(space):
        if text == c.id or text.lower() == c.name.lower() or (c.code is not None and text == c.code):
            return i
    names = [c.name for c in space]
    close = difflib.get_close_matches(text.upper(), [n.upper() for n in names], n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(repr(names[[n.upper() for n in names].index(m)]) for m in close)}?" if close else ""
    raise ValueError(f"Condition {text!r} is not in the model's {output} label space ({len(space)} conditions).{hint}")


def _target_fn(model, target: int, output: str):
    def f(x, lead_mask=None, sample_mask=None):
        out = model(input_values=x, lead_mask=lead_mask, sample_mask=sample_mask, return_dict=True)
        if output == "risk":
            return out.risk_scores[:, target]
        logits = getattr(out, "diagnosis_logits", None)
        if logits is None:
            logits = out.logits
        return logits[:, target]

    return f


def _check_output(model, output: str) -> str:
    has_diag = getattr(model, "classifier", None) is not None
    has_risk = getattr(model, "risk_head", None) is not None
    if output == "auto":
        output = "diagnosis" if has_diag else "risk"
    if output == "diagnosis" and not has_diag:
        raise ValueError(f"{type(model).__name__} has no diagnosis head; use output='risk'.")
    if output == "risk" and not has_risk:
        raise ValueError(f"{type(model).__name__} has no risk head (diagnoses only).")
    if output not in ("diagnosis", "risk"):
        raise ValueError(f"output must be 'diagnosis', 'risk' or 'auto', got {output!r}.")
    return output


def integrated_gradients(
    model,
    input_values: torch.Tensor,
    target,
    *,
    baseline: torch.Tensor | None = None,
    steps: int = 32,
    internal_batch_size: int = 8,
    output: str = "auto",
    lead_mask: torch.Tensor | None = None,
    sample_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrated gradients of one output of `model` with respect to its input.

    Args:
        model: an AnyECG model with a diagnosis or risk head (put in eval mode by the caller).
        input_values (`torch.Tensor` of shape `(batch, leads, samples)`): preprocessed inputs.
        target: the condition (index, id, name or code; see `resolve_condition`).
        baseline (`torch.Tensor`, *optional*): same shape as `input_values`; zeros by default.
        steps (`int`, defaults to 32): trapezoid intervals along the straight path (`steps + 1` gradient
            evaluations per ECG).
        internal_batch_size (`int`, defaults to 8): path points per forward/backward pass (memory bound).
        output (`str`): `"diagnosis"` (the logit), `"risk"` (the risk score) or `"auto"` (diagnosis when the model
            has that head).
        lead_mask, sample_mask: passed to the model unchanged.

    Returns:
        `(attributions, delta)`: attributions of the shape of `input_values` (float32), and per ECG
        `delta = sum(attributions) - (F(x) - F(baseline))`, the completeness error of the approximation.
    """
    output = _check_output(model, output)
    target = resolve_condition(model.config, target, output)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    f = _target_fn(model, target, output)
    x = input_values.detach()
    x0 = torch.zeros_like(x) if baseline is None else baseline.detach().to(x.device, x.dtype)
    alphas = torch.linspace(0.0, 1.0, steps + 1, device=x.device, dtype=x.dtype)
    weights = torch.full((steps + 1,), 1.0 / steps, device=x.device, dtype=x.dtype)
    weights[0] = weights[-1] = 0.5 / steps  # trapezoid rule
    total = torch.zeros_like(x)
    with torch.enable_grad():
        for b in range(x.shape[0]):
            xb, x0b = x[b : b + 1], x0[b : b + 1]
            extra = {}
            if lead_mask is not None:
                extra["lead_mask"] = lead_mask[b : b + 1]
            if sample_mask is not None:
                extra["sample_mask"] = sample_mask[b : b + 1]
            for start in range(0, steps + 1, internal_batch_size):
                a = alphas[start : start + internal_batch_size]
                path = (x0b + a[:, None, None] * (xb - x0b)).requires_grad_(True)
                rep = {k: v.expand(len(a), *v.shape[1:]) for k, v in extra.items()}
                out = f(path, **rep)
                (grad,) = torch.autograd.grad(out.sum(), path)
                total[b] += (weights[start : start + len(a), None, None] * grad).sum(0)
        with torch.no_grad():
            kw = {k: v for k, v in (("lead_mask", lead_mask), ("sample_mask", sample_mask)) if v is not None}
            diff = f(x, **kw) - f(x0, **kw)
    attributions = ((x - x0) * total).float()
    delta = attributions.sum(dim=(1, 2)) - diff.float()
    return attributions.detach(), delta.detach()


def input_x_gradient(model, input_values: torch.Tensor, target, *, output: str = "auto", lead_mask=None, sample_mask=None) -> torch.Tensor:
    """`input * d F / d input` for each ECG of `input_values` (arguments as in `integrated_gradients`)."""
    output = _check_output(model, output)
    target = resolve_condition(model.config, target, output)
    f = _target_fn(model, target, output)
    x = input_values.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(f(x, lead_mask=lead_mask, sample_mask=sample_mask).sum(), x)
    return (x * grad).detach().float()


def lead_importance(attributions, lead_mask=None) -> np.ndarray:
    """Share of the total absolute attribution carried by each lead: `(batch, leads)` rows summing to 1 (0 for
    masked leads)."""
    a = np.abs(np.asarray(attributions.detach().cpu() if hasattr(attributions, "detach") else attributions, dtype=np.float64))
    per_lead = a.sum(axis=-1)
    if lead_mask is not None:
        per_lead = per_lead * np.asarray(lead_mask.cpu() if hasattr(lead_mask, "cpu") else lead_mask, dtype=bool)
    total = per_lead.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, per_lead / total, 0.0)


def explain_record(model, feature_extractor, record, condition=None, *, method: str = "integrated_gradients",
                   steps: int = 32, output: str = "auto", sampling_rate=None, lead_names=None) -> dict:
    """Attributions of one ECG (its first `num_samples` window) for one condition.

    Args:
        model, feature_extractor: as returned by `anyecg_hf.pipelines.load_model_and_extractor`.
        record: an `ECGRecord`, or a `(leads, samples)` array with `sampling_rate` (and `lead_names`).
        condition (*optional*): index, id, name or code; default the condition with the highest score.
        method (`str`): `"integrated_gradients"` (alias `"ig"`) or `"input_x_gradient"` (alias `"ixg"`).
        steps (`int`): integration steps of integrated gradients.
        output (`str`): `"diagnosis"`, `"risk"` or `"auto"`.

    Returns:
        `dict` with `condition` (id), `label`, `index`, `output`, `score` (probability for a diagnosis, risk score
        for a risk), `method`, `attributions` (`(leads, samples)` float32 on the model's time grid),
        `lead_importance` (`(leads,)` shares), `lead_names` (the model's), `sampling_rate` (the model's), `delta`
        (completeness error, integrated gradients only).
    """
    output = _check_output(model, output)
    kwargs = {} if hasattr(record, "signal") else {"sampling_rate": sampling_rate, "lead_names": lead_names}
    batch = feature_extractor(record, return_tensors="pt", **{k: v for k, v in kwargs.items() if v is not None})
    batch.pop("window_to_record", None)
    device = next(model.parameters()).device
    x = batch["input_values"][:1].to(device=device, dtype=next(model.parameters()).dtype)
    lead_mask = batch.get("lead_mask")
    lead_mask = None if lead_mask is None else lead_mask[:1].to(device)
    model.eval()
    with torch.no_grad():
        out = model(input_values=x, lead_mask=lead_mask, return_dict=True)
    if output == "risk":
        scores = out.risk_scores[0].float()
        space = model.config.risk_label_space
    else:
        logits = getattr(out, "diagnosis_logits", None)
        scores = torch.sigmoid((out.logits if logits is None else logits)[0].float())
        space = model.config.label_space
    index = int(torch.argmax(scores)) if condition is None else resolve_condition(model.config, condition, output)
    method = {"ig": "integrated_gradients", "ixg": "input_x_gradient"}.get(method, method)
    delta = None
    if method == "integrated_gradients":
        attr, delta = integrated_gradients(model, x, index, steps=steps, output=output, lead_mask=lead_mask)
        delta = float(delta[0])
    elif method == "input_x_gradient":
        attr = input_x_gradient(model, x, index, output=output, lead_mask=lead_mask)
    else:
        raise ValueError(f"method must be 'integrated_gradients' or 'input_x_gradient', got {method!r}.")
    attr = attr[0].cpu().numpy()
    return {
        "condition": space[index].id, "label": space[index].name, "index": index, "output": output,
        "score": float(scores[index]), "method": method, "attributions": attr,
        "lead_importance": lead_importance(attr[None], None if lead_mask is None else lead_mask.cpu())[0],
        "lead_names": list(model.config.lead_names), "sampling_rate": float(model.config.sampling_rate),
        "delta": delta,
    }
