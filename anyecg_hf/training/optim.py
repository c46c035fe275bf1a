"""Optimisation: parameter groups for full fine-tuning, linear probing and layer-wise learning-rate decay."""

from __future__ import annotations

__all__ = ["parameter_groups"]


def _depth(name: str, n_stages: int) -> int:
    """Depth of a parameter for layer-wise decay: stem 0, stage i -> i + 1, heads n_stages + 1."""
    if name.startswith("anyecg.stem."):
        return 0
    if name.startswith("anyecg.stages."):
        return int(name.split(".")[2]) + 1
    return n_stages + 1


def parameter_groups(model, strategy: str, lr: float, weight_decay: float, layer_decay: float = 0.75,
                     head_lr: float | None = None) -> list[dict]:
    r"""Optimizer parameter groups (layer-wise learning-rate decay and friends).

    * `"full"`: every parameter at `lr` (heads at `head_lr` when given).
    * `"linear_probe"`: the backbone is frozen (`requires_grad=False`); only the heads train.
    * `"llrd"`: layer-wise learning-rate decay, :math:`\mathrm{lr}_d = \mathrm{lr}\cdot \gamma^{D-d}` with depth
      :math:`d` (stem 0, stage :math:`i` at :math:`i+1`, heads :math:`D` = stages + 1) and :math:`\gamma` =
      `layer_decay`, so early layers, which hold the most general features, move least.

    Biases and 1-D parameters get no weight decay.
    """
    if strategy not in ("full", "linear_probe", "llrd"):
        raise ValueError(f"training.strategy must be 'full', 'linear_probe' or 'llrd', got {strategy!r}.")
    n_stages = len(model.config.filter_list)
    head_lr = lr if head_lr is None else head_lr
    groups: dict = {}
    for name, p in model.named_parameters():
        is_backbone = name.startswith("anyecg.")
        if strategy == "linear_probe" and is_backbone:
            p.requires_grad_(False)
            continue
        depth = _depth(name, n_stages)
        if strategy == "llrd":
            group_lr = lr * layer_decay ** (n_stages + 1 - depth) if is_backbone else head_lr
        else:
            group_lr = lr if is_backbone else head_lr
        decay = weight_decay if p.ndim > 1 else 0.0
        key = (group_lr, decay)
        groups.setdefault(key, {"params": [], "lr": group_lr, "weight_decay": decay})["params"].append(p)
    return list(groups.values())
