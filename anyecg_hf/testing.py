"""Helpers for tests, benchmarks and examples: tiny configs and the seeded ECGFounder weights of the parity
fixture (`../shared/fixtures/ecgfounder_parity/README.md`), so that no test needs network or real weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .modeling import AnyECGConfig, LabelSpace


def shared_dir() -> Path:
    """The read-only `shared/` folder beside the project root (override with `ANYECG_SHARED_DIR`)."""
    env = os.environ.get("ANYECG_SHARED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared"


def parity_dir() -> Path:
    return shared_dir() / "fixtures" / "ecgfounder_parity"


def tiny_config(**overrides) -> AnyECGConfig:
    """A ~20 k-parameter backbone with the released topology (2 stages) for fast tests."""
    kwargs = dict(
        base_filters=8,
        filter_list=[16, 32],
        m_blocks_list=[1, 2],
        groups_width=8,
        label_space=LabelSpace.from_names(["AF", "SB", "STACH"]),
    )
    kwargs.update(overrides)
    return AnyECGConfig(**kwargs)


def seeded_ecgfounder_state_dict(model: str = "12lead", layout_path: str | os.PathLike | None = None) -> dict:
    """Original-layout (`Net1D`) state dict with the fixture's seeded weights (`model` = "12lead" or "1lead")."""
    layout_path = layout_path or parity_dir() / "state_dict_layout.json"
    spec = json.loads(Path(layout_path).read_text())[model]
    rng = np.random.default_rng(spec["seed"])
    state = {}
    for key, shape, _dtype in spec["keys"]:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.int64)
            continue
        a = rng.standard_normal(shape).astype(np.float32)
        if len(shape) >= 2:
            a *= np.float32(1 / np.sqrt(np.prod(shape[1:])))
        elif key.endswith("running_var"):
            a = np.abs(a) + np.float32(0.5)
        else:
            a *= np.float32(0.1)
        state[key] = torch.from_numpy(a)
    return state


def write_seeded_ecgfounder_checkpoint(path: str | os.PathLike, model: str = "12lead", wrap: bool = True) -> Path:
    """Write the seeded weights as the released files are laid out: `{"state_dict": {"module.<key>": ...}}`."""
    state = seeded_ecgfounder_state_dict(model)
    obj = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 1} if wrap else state
    torch.save(obj, path)
    return Path(path)
