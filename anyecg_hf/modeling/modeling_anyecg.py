"""AnyECG models: the ECGFounder backbone (`AnyECGModel`) and the multi-label diagnosis head.

Heads share one backbone under the attribute `anyecg` (`base_model_prefix`), so a checkpoint of any head can
initialise any other. Survival and profiling heads live in `modeling_anyecg_risk.py` and reuse
`AnyECGPreTrainedModel`, `masked_bce_with_logits` and the ECGFounder loading hook defined here.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_anyecg import AnyECGConfig
from .convert_ecgfounder import (
    DEFAULT_ECGFOUNDER_REPO,
    ecgfounder_config,
    load_ecgfounder_checkpoint,
    split_ecgfounder_state_dict,
)
from .ecgfounder_labels import ECGFOUNDER_LABELS  # noqa: F401 - trust_remote_code (configuration_anyecg.py says why)
from .label_space import LabelSpace  # noqa: F401 - same
from .layers import CACHE_BLOCK_SIZE, Stage, Stem, run_backbone

try:  # transformers >= 5: init functions that skip weights already loaded from a checkpoint
    from transformers import initialization as init
except ImportError:  # pragma: no cover - transformers 4.x
    from torch.nn import init


@dataclass
class AnyECGModelOutput(ModelOutput):
    """Output of `AnyECGModel`.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, hidden_size, time)`): last stage's feature map
            (time = input length / 256 rounded up, 20 for 5,000 samples).
        pooler_output (`torch.FloatTensor` of shape `(batch, hidden_size)`): mean over time, the ECG embedding.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): stem output then each stage's output, when
            `output_hidden_states=True`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class AnyECGDiagnosisOutput(ModelOutput):
    """Output of `AnyECGForDiagnosis`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): masked multi-label BCE, when `labels` are given.
        logits (`torch.FloatTensor` of shape `(batch, num_labels)`): one logit per condition of
            `config.label_space`; `sigmoid(logits)` are the probabilities.
        pooler_output (`torch.FloatTensor` of shape `(batch, hidden_size)`): the ECG embedding.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): as in `AnyECGModelOutput`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


def masked_bce_with_logits(
    logits: torch.Tensor,
    labels: torch.Tensor,
    label_mask: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-label BCE averaged over the known (unmasked) entries only.

    .. math:: L = \\frac{\\sum_{ij} m_{ij}\\,\\ell(z_{ij}, y_{ij})}{\\max(1, \\sum_{ij} m_{ij})}

    where :math:`m` is `label_mask` (1 = label known). Masked entries are removed with `torch.where` before the sum,
    so a NaN placeholder in an unknown label cannot leak into the loss or its gradient; an all-masked batch gives a
    loss of exactly 0 with zero gradient.
    """
    if labels.shape != logits.shape:
        raise ValueError(f"labels have shape {tuple(labels.shape)} but logits have {tuple(logits.shape)}.")
    labels = labels.to(logits.dtype)
    if label_mask is None:
        return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
    if label_mask.shape != logits.shape:
        raise ValueError(f"label_mask has shape {tuple(label_mask.shape)} but logits have {tuple(logits.shape)}.")
    mask = label_mask.bool()
    safe_labels = torch.where(mask, labels, torch.zeros_like(labels))
    per_entry = F.binary_cross_entropy_with_logits(logits, safe_labels, pos_weight=pos_weight, reduction="none")
    per_entry = torch.where(mask, per_entry, torch.zeros_like(per_entry))
    return per_entry.sum() / mask.sum().clamp(min=1)


class AnyECGPreTrainedModel(PreTrainedModel):
    """Weight initialisation, ECGFounder conversion and saving shared by every AnyECG model."""

    config_class = AnyECGConfig
    base_model_prefix = "anyecg"
    main_input_name = "input_values"
    supports_gradient_checkpointing = False
    _no_split_modules = ["BottleneckBlock"]

    def _init_weights(self, module):
        if isinstance(module, nn.Conv1d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)

    # ------------------------------------------------------------------ named outputs
    @property
    def heads(self) -> dict:
        """Which outputs this model gives: `diagnosis` (a classifier), `risk` (a risk head), `regression`."""
        return {
            "diagnosis": getattr(self, "classifier", None) is not None,
            "risk": getattr(self, "risk_head", None) is not None,
            "regression": getattr(self, "regression_head", None) is not None,
        }

    def named_outputs(self, outputs, horizons=None) -> dict:
        """What the pipelines, `anyecg profile` and dataset evaluation report, from one forward output (this model's,
        an ONNX Runtime one, or a dict of the same fields), as float32 tensors of the heads this model has:

        * `probabilities`: sigmoid of the diagnosis logits (`diagnosis_logits`, else `logits`), `(batch, n_labels)`;
          (an output without the field, e.g. a dict of some heads only, gives no entry for it);
        * `risk_scores` `(batch, n_risk)` and `cumulative_incidence` `(batch, n_risk, n_horizons)` at `horizons`
          (years; default `config.risk_horizons`, taken from the output), `None` without a fitted baseline hazard;
        * `regression_outputs` `(batch, n_traits)`.
        """

        def field(name):
            return outputs.get(name) if isinstance(outputs, Mapping) else getattr(outputs, name, None)

        heads = self.heads
        result = {}
        logits = field("diagnosis_logits")
        logits = field("logits") if logits is None else logits
        if heads["diagnosis"] and logits is not None:
            result["probabilities"] = torch.sigmoid(logits.float())
        if heads["risk"] and field("risk_scores") is not None:
            result["risk_scores"] = field("risk_scores").float()
            incidence = field("cumulative_incidence") if horizons is None else self.cumulative_incidence_at(outputs, horizons)
            result["cumulative_incidence"] = None if incidence is None else incidence.float()
        if field("regression_outputs") is not None:
            result["regression_outputs"] = field("regression_outputs").float()
        return result

    def _check_input(self, input_values: torch.Tensor) -> None:
        if not isinstance(input_values, torch.Tensor):
            raise ValueError(f"input_values must be a torch.Tensor, got {type(input_values).__name__}.")
        if input_values.dim() != 3:
            raise ValueError(
                f"input_values must be (batch, leads, samples); got shape {tuple(input_values.shape)}. "
                "For a single ECG use x[None]; use AnyECGFeatureExtractor to build batches from raw signals."
            )
        if input_values.shape[1] != self.config.in_channels:
            raise ValueError(
                f"input_values has {input_values.shape[1]} leads but this model expects {self.config.in_channels} "
                f"({', '.join(self.config.lead_names)}). If your array is (batch, samples, leads), transpose it; "
                "the feature extractor reorders and zero-fills leads."
            )
        if not input_values.is_floating_point():
            raise ValueError(f"input_values must be a floating-point tensor, got {input_values.dtype}.")

    # ------------------------------------------------------------------ ECGFounder conversion
    @classmethod
    def from_ecgfounder(
        cls,
        path_or_repo_id: str | os.PathLike = DEFAULT_ECGFOUNDER_REPO,
        filename: str | None = None,
        num_leads: int | None = None,
        label_space=None,
        trust_checkpoint: bool = False,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        **config_kwargs,
    ):
        """Build this model from an original ECGFounder `.pth` checkpoint (a local file or a Hub repo id).

        Args:
            path_or_repo_id: a `.pth` file, a folder holding one, or a Hub repo id (downloaded with
                `hf_hub_download`; default `PKUDigitalHealth/ECGFounder`).
            filename: checkpoint name inside a folder or repo; default `12_lead_ECGFounder.pth` or
                `1_lead_ECGFounder.pth` by `num_leads`.
            num_leads: 12 or 1; checked against the checkpoint (inferred from it when `None`).
            label_space: the head's conditions; default the 150 ECGFounder labels when the checkpoint has 150
                outputs.
            trust_checkpoint: allow full unpickling when `weights_only=True` refuses the file. Only for files you
                trust: unpickling can run arbitrary code.
            config_kwargs: overrides of `AnyECGConfig` fields that do not change the weights' shapes.
        """
        state_dict, source = load_ecgfounder_checkpoint(
            path_or_repo_id, filename=filename, num_leads=num_leads, trust_checkpoint=trust_checkpoint,
            revision=revision, cache_dir=cache_dir,
        )
        config = ecgfounder_config(state_dict, num_leads=num_leads, label_space=label_space, source=source, **config_kwargs)
        config.architectures = [cls.__name__]
        backbone, head = split_ecgfounder_state_dict(state_dict, config, source=source)
        model = cls(config)
        model._load_ecgfounder_weights(backbone, head, source=source)
        model.name_or_path = str(path_or_repo_id)
        return model.eval()

    def _load_ecgfounder_weights(self, backbone: dict, head: dict, source: str) -> None:
        """Load converted weights; heads other than the 150-label classifier override this."""
        _load_strict(self.anyecg, backbone, source, "backbone")

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus a `preprocessor_config.json` matching the config when the folder
        has none (so `pipeline(model=folder)` works on every folder we write) and the code of the feature extractor
        and the `ecg-*` pipelines for `trust_remote_code` (`anyecg_hf.remote_code`)."""
        try:  # by name: this file also runs as trust_remote_code, where the package may be absent
            remote = importlib.import_module("anyecg_hf.remote_code")
        except ImportError:
            return super().save_pretrained(save_directory, *args, **kwargs)
        return remote.save_model_with_code(self, super().save_pretrained, save_directory, *args, **kwargs)


def _load_strict(module: nn.Module, state_dict: dict, source: str, what: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                parts.append(f"{label} ({len(items)}): {', '.join(items[:8])}{' ...' if len(items) > 8 else ''}")
        raise ValueError(f"{source}: the {what} weights do not match the ECGFounder layout; " + "; ".join(parts))
    with torch.no_grad():
        for k, v in state_dict.items():
            own[k].copy_(v.to(own[k].dtype))


class AnyECGModel(AnyECGPreTrainedModel):
    """The ECGFounder backbone: stem, 7 stages of bottleneck blocks, mean pooling. Returns the last feature map
    and the pooled ECG embedding."""

    # ECGs per chunk through the early stages (cache blocking, see `layers.run_backbone`); 0 disables. A runtime
    # setting, not part of the config: outputs do not depend on it.
    cache_block_size: int = CACHE_BLOCK_SIZE

    def __init__(self, config: AnyECGConfig):
        super().__init__(config)
        block_kwargs = dict(
            ratio=config.ratio,
            kernel_size=config.kernel_size,
            groups_width=config.groups_width,
            use_se=config.use_se,
            use_batch_norm=config.use_batch_norm,
            dropout=config.dropout,
        )
        self.stem = Stem(config.in_channels, config.base_filters, config.kernel_size, config.stride, config.use_batch_norm)
        widths = [config.base_filters] + config.filter_list
        self.stages = nn.ModuleList(
            Stage(widths[i], widths[i + 1], n, stride=config.stride, first_stage=i == 0, **block_kwargs)
            for i, n in enumerate(config.m_blocks_list)
        )
        self.post_init()

    def forward(
        self,
        input_values: torch.Tensor,
        lead_mask: torch.Tensor | None = None,
        sample_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ):
        """
        Args:
            input_values (`torch.FloatTensor` of shape `(batch, leads, samples)`): preprocessed ECG, leads in
                `config.lead_names` order (what `AnyECGFeatureExtractor` returns).
            lead_mask (`torch.BoolTensor` of shape `(batch, leads)`, *optional*): which leads were recorded.
                Accepted so that `model(**feature_extractor(...))` works; missing leads arrive zero-filled, which is
                what ECGFounder saw in training, so the mask does not change the computation.
            sample_mask (`torch.BoolTensor` of shape `(batch, samples)`, *optional*): real (1) vs padded (0)
                samples; accepted for the same reason and likewise not used (ECGFounder pools over all steps).
            output_hidden_states (`bool`, *optional*): also return the stem and every stage output.
        """
        self._check_input(input_values)
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = self.config.return_dict if return_dict is None else return_dict
        hidden, all_hidden = run_backbone(self.stem, self.stages, input_values, self.cache_block_size, output_hidden_states)
        pooled = hidden.mean(dim=-1)
        # stages may run time-major (see layers.py); hand out the usual channel-major layout (a no-op for ECGFounder)
        hidden = hidden.contiguous()
        if not return_dict:
            return tuple(v for v in (hidden, pooled, all_hidden) if v is not None)
        return AnyECGModelOutput(last_hidden_state=hidden, pooler_output=pooled, hidden_states=all_hidden)

    def _load_ecgfounder_weights(self, backbone: dict, head: dict, source: str) -> None:
        _load_strict(self, backbone, source, "backbone")


class AnyECGForDiagnosis(AnyECGPreTrainedModel):
    """Backbone + linear multi-label head over `config.label_space` (ECGFounder's 150 labels by default)."""

    def __init__(self, config: AnyECGConfig):
        super().__init__(config)
        self.anyecg = AnyECGModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout) if config.classifier_dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        label_mask: torch.Tensor | None = None,
        lead_mask: torch.Tensor | None = None,
        sample_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ):
        """
        Args:
            input_values (`torch.FloatTensor` of shape `(batch, leads, samples)`): see `AnyECGModel.forward`.
            labels (`torch.FloatTensor` of shape `(batch, num_labels)`, *optional*): 0/1 targets; gives `loss`.
            label_mask (`torch.BoolTensor` of shape `(batch, num_labels)`, *optional*): 1 where the label is known;
                unknown labels are left out of the loss (see `masked_bce_with_logits`).
            lead_mask, sample_mask, output_hidden_states: see `AnyECGModel.forward`.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        base = self.anyecg(input_values, lead_mask=lead_mask, sample_mask=sample_mask,
                           output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(base.pooler_output))
        loss = None
        if labels is not None:
            pos_weight = None
            if self.config.diagnosis_pos_weight is not None:
                pos_weight = torch.tensor(self.config.diagnosis_pos_weight, dtype=logits.dtype, device=logits.device)
            loss = masked_bce_with_logits(logits, labels, label_mask, pos_weight)
        if not return_dict:
            out = (logits, base.pooler_output) + ((base.hidden_states,) if base.hidden_states is not None else ())
            return ((loss,) + out) if loss is not None else out
        return AnyECGDiagnosisOutput(loss=loss, logits=logits, pooler_output=base.pooler_output, hidden_states=base.hidden_states)

    def _load_ecgfounder_weights(self, backbone: dict, head: dict, source: str) -> None:
        _load_strict(self.anyecg, backbone, source, "backbone")
        _load_strict(self.classifier, head, source, "classifier")


AnyECGConfig.register_for_auto_class()
for _cls in (AnyECGModel, AnyECGForDiagnosis):
    _cls.register_for_auto_class("AutoModel")
