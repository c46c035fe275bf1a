"""Reading the original ECGFounder checkpoints (`Net1D` state dicts) and mapping them to our module names."""

from __future__ import annotations

import os
import pickle
import re
import warnings

import torch

from .configuration_anyecg import STANDARD_12_LEADS, AnyECGConfig
from .label_space import LabelSpace

DEFAULT_ECGFOUNDER_REPO = "PKUDigitalHealth/ECGFounder"
DEFAULT_FILENAMES = {12: "12_lead_ECGFounder.pth", 1: "1_lead_ECGFounder.pth"}

# released name -> our name (backbone names are relative to `AnyECGModel`)
_RENAMES = (
    (re.compile(r"^first_conv\.conv\.(weight|bias)$"), r"stem.conv.\1"),
    (re.compile(r"^first_bn\.(.+)$"), r"stem.norm.\1"),
    (re.compile(r"^stage_list\.(\d+)\.block_list\.(\d+)\.conv([123])\.conv\.(weight|bias)$"), r"stages.\1.blocks.\2.conv\3.\4"),
    (re.compile(r"^stage_list\.(\d+)\.block_list\.(\d+)\.bn([123])\.(.+)$"), r"stages.\1.blocks.\2.norm\3.\4"),
    (re.compile(r"^stage_list\.(\d+)\.block_list\.(\d+)\.se_fc([12])\.(weight|bias)$"), r"stages.\1.blocks.\2.se.fc\3.\4"),
)
_BN_KEY = re.compile(r"(^first_bn\.|\.bn[123]\.)")


def load_ecgfounder_checkpoint(
    path_or_repo_id,
    filename: str | None = None,
    num_leads: int | None = None,
    trust_checkpoint: bool = False,
    revision: str | None = None,
    cache_dir=None,
) -> tuple[dict, str]:
    """Return `(state_dict, source)` of an original ECGFounder checkpoint.

    Accepts a `.pth` path, a folder holding the checkpoint, or a Hub repo id. The file is read with
    `torch.load(weights_only=True)`; a bare state dict and `{"state_dict": ...}` (other keys such as `optimizer`
    ignored) are both accepted, and a DataParallel `module.` prefix is stripped.
    """
    if num_leads is not None and num_leads not in DEFAULT_FILENAMES:
        raise ValueError(f"num_leads must be 12 or 1 for ECGFounder checkpoints, got {num_leads}.")
    path = os.fspath(path_or_repo_id)
    default_name = filename or DEFAULT_FILENAMES[num_leads or 12]
    if os.path.isdir(path):
        path = os.path.join(path, default_name)
        if not os.path.isfile(path):
            raise ValueError(f"{path_or_repo_id}: no {default_name} in this folder (pass filename=...).")
    elif not os.path.isfile(path):
        if path.endswith((".pth", ".pt", ".bin")) or os.sep in path and not _looks_like_repo_id(path):
            raise ValueError(f"ECGFounder checkpoint {path} does not exist.")
        path = _download(path, default_name, revision=revision, cache_dir=cache_dir)
    source = path
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not trust_checkpoint:
            raise ValueError(
                f"{source}: torch.load(weights_only=True) refused this checkpoint because it holds objects other "
                f"than tensors ({str(err).splitlines()[0][:200]}). If you trust the file, pass trust_checkpoint=True "
                "(CLI: --trust-checkpoint); unpickling an untrusted file can run arbitrary code."
            ) from None
        warnings.warn(f"{source}: loading with weights_only=False because trust_checkpoint=True.", stacklevel=3)
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated / not a torch file
        raise ValueError(f"{source}: not a readable PyTorch checkpoint ({type(err).__name__}: {err}).") from None
    return _extract_state_dict(obj, source), source


def _looks_like_repo_id(path: str) -> bool:
    return bool(re.fullmatch(r"[\w.\-]+/[\w.\-]+", path))


def _download(repo_id: str, filename: str, revision=None, cache_dir=None) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir)
    except LocalEntryNotFoundError as err:
        raise OSError(
            f"Cannot get {filename} from the Hub repo {repo_id}: offline (or HF_HUB_OFFLINE=1) and not in the "
            f"cache. Download it once with network access, or pass a local .pth path. ({err})"
        ) from None
    except HfHubHTTPError as err:
        raise OSError(f"Cannot download {filename} from the Hub repo {repo_id}: {err}") from None


def _extract_state_dict(obj, source: str) -> dict:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"{source}: expected a state dict of tensors (or {{'state_dict': ...}}), got "
            f"{type(obj).__name__} with keys {list(obj)[:8] if isinstance(obj, dict) else '-'}."
        )
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def ecgfounder_config(state_dict: dict, num_leads: int | None = None, label_space=None, source: str = "checkpoint", **overrides) -> AnyECGConfig:
    """Infer the `AnyECGConfig` of an ECGFounder state dict from its tensor shapes."""
    stem = state_dict.get("first_conv.conv.weight")
    dense = state_dict.get("dense.weight")
    if stem is None or dense is None:
        raise ValueError(
            f"{source}: not an ECGFounder Net1D checkpoint: missing "
            f"{', '.join(k for k in ('first_conv.conv.weight', 'dense.weight') if k not in state_dict)}; "
            f"found keys {', '.join(list(state_dict)[:8])}{' ...' if len(state_dict) > 8 else ''}."
        )
    in_channels = stem.shape[1]
    if num_leads is not None and num_leads != in_channels:
        raise ValueError(f"{source}: checkpoint has {in_channels} input leads but num_leads={num_leads}.")
    blocks: dict[int, int] = {}
    for key in state_dict:
        m = re.match(r"^stage_list\.(\d+)\.block_list\.(\d+)\.", key)
        if m:
            s, b = int(m.group(1)), int(m.group(2))
            blocks[s] = max(blocks.get(s, 0), b + 1)
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise ValueError(f"{source}: stage_list entries are missing or not contiguous ({sorted(blocks)}).")
    try:
        filter_list = [state_dict[f"stage_list.{s}.block_list.0.conv3.conv.weight"].shape[0] for s in range(len(blocks))]
        middle0 = state_dict["stage_list.0.block_list.0.conv1.conv.weight"].shape[0]
        groups_width = state_dict["stage_list.0.block_list.0.conv2.conv.weight"].shape[1]
    except KeyError as err:
        raise ValueError(f"{source}: not an ECGFounder Net1D checkpoint: missing key {err}.") from None
    n_classes = dense.shape[0]
    if label_space is None:
        label_space = LabelSpace.ecgfounder() if n_classes == 150 else LabelSpace.generic(n_classes)
    kwargs = dict(
        in_channels=in_channels,
        base_filters=stem.shape[0],
        kernel_size=stem.shape[2],
        filter_list=filter_list,
        m_blocks_list=[blocks[s] for s in range(len(blocks))],
        groups_width=groups_width,
        ratio=middle0 / filter_list[0],
        lead_names={12: list(STANDARD_12_LEADS), 1: ["I"]}.get(in_channels),
        label_space=label_space,
    )
    kwargs.update(overrides)
    if kwargs["lead_names"] is None:
        raise ValueError(f"{source}: {in_channels} input leads; pass lead_names=[...] to say which they are.")
    return AnyECGConfig(**kwargs)


def split_ecgfounder_state_dict(state_dict: dict, config: AnyECGConfig, source: str = "checkpoint") -> tuple[dict, dict]:
    """Rename released keys to ours: returns `(backbone, classifier)` state dicts.

    BatchNorm entries are dropped when `config.use_batch_norm` is False (they exist in the released files but are
    unused); any other key that has no counterpart is reported.
    """
    backbone, head, unknown = {}, {}, []
    for key, value in state_dict.items():
        if key in ("dense.weight", "dense.bias"):
            head[key.replace("dense.", "")] = value
            continue
        if _BN_KEY.search(key) and not config.use_batch_norm:
            continue
        for pattern, repl in _RENAMES:
            if pattern.match(key):
                backbone[pattern.sub(repl, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"{source}: keys with no counterpart in the ECGFounder layout ({len(unknown)}): "
            f"{', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}."
        )
    if len(head) != 2:
        raise ValueError(f"{source}: the classifier needs dense.weight and dense.bias.")
    return backbone, head
