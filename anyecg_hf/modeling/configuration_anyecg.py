"""AnyECG model configuration."""

from __future__ import annotations

import sys

from transformers import PretrainedConfig

from .ecgfounder_labels import ECGFOUNDER_LABELS  # noqa: F401 - see below
from .label_space import LabelSpace

# trust_remote_code: transformers 5.0 copies only the DIRECT relative imports of a local folder's entry file into its
# module cache, so every module this file needs (here label_space's ecgfounder_labels) is imported here directly.

ANYECG_VERSION = "0.1.0"  # written into config.json so later releases can migrate old checkpoints

STANDARD_12_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


class AnyECGConfig(PretrainedConfig):
    r"""Configuration of the ECGFounder / AnyECG backbone and its heads. Defaults reproduce the released
    12-lead ECGFounder network (`Net1D`, 30.8 M parameters, 150 labels).

    Args:
        in_channels (`int`, *optional*, defaults to 12):
            Number of input leads; must equal `len(lead_names)`.
        base_filters (`int`, *optional*, defaults to 64):
            Output channels of the stem convolution.
        filter_list (`list[int]`, *optional*, defaults to `[64, 160, 160, 400, 400, 1024, 1024]`):
            Width of each stage. The last entry is the embedding size (`hidden_size`).
        m_blocks_list (`list[int]`, *optional*, defaults to `[2, 2, 2, 3, 3, 4, 4]`):
            Number of bottleneck blocks in each stage; same length as `filter_list`.
        kernel_size (`int`, *optional*, defaults to 16):
            Kernel of the stem and of every grouped convolution (TensorFlow-style "same" padding).
        stride (`int`, *optional*, defaults to 2):
            Stride of the stem and of the first block of every stage.
        groups_width (`int`, *optional*, defaults to 16):
            Channels per group in the grouped convolutions (`groups = width // groups_width`).
        ratio (`float`, *optional*, defaults to 1.0):
            Bottleneck expansion: the middle width of a block is `int(width * ratio)`.
        use_se (`bool`, *optional*, defaults to `True`):
            Squeeze-excitation after every block (reduction 2, as released).
        use_batch_norm (`bool`, *optional*, defaults to `False`):
            BatchNorm before each activation. Off in the released weights (its parameters exist there but are
            unused); the converter drops them.
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout before each convolution of a block (off in the released network).
        classifier_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on the pooled embedding before a head.
        sampling_rate (`int`, *optional*, defaults to 500):
            Sampling rate (Hz) the model expects; the feature extractor resamples to it.
        num_samples (`int`, *optional*, defaults to 5000):
            Window length (samples) the model was trained on (10 s at 500 Hz). Other lengths run, but
            predictions are calibrated for this one.
        lead_names (`list[str]`, *optional*, defaults to the standard 12 leads):
            Canonical lead order of the input channels (I, II, III, aVR, aVL, aVF, V1-V6; `["I"]` for 1-lead).
        label_space (`LabelSpace` or `list[dict]`, *optional*):
            Diagnosis conditions, in output order. Defaults to the 150 ECGFounder labels. `id2label`,
            `label2id` and `num_labels` always mirror it. If only `num_labels` or `id2label` is given, a free-text
            label space is built from them.
        diagnosis_pos_weight (`list[float]`, *optional*):
            `pos_weight` of the multi-label BCE loss, one per condition (class weighting).
        risk_label_space (`LabelSpace` or `list[dict]`, *optional*):
            Conditions of the future-risk (survival) head, which may differ from the diagnosis ones; `None`
            for models without a risk head (such as ECGFounder).
        risk_horizons (`list[float]`, *optional*, defaults to `[1.0, 5.0, 10.0]`):
            Horizons (years) at which absolute risks are reported.
        risk_head_type (`str`, *optional*, defaults to `"cox"`):
            Future-risk head: `"cox"` (one log relative hazard per condition, Cox partial likelihood with Efron
            ties, Breslow baseline cumulative hazard fitted after training) or `"discrete"` (logistic hazard per
            time bin of `risk_time_bins`, cumulative incidence straight from `forward`).
        risk_time_bins (`list[float]`, *optional*, defaults to `[0, 1, 2, ..., 10]`):
            Edges (years) of the discrete-time head's intervals `(e_{j-1}, e_j]`; strictly increasing, a leading 0
            is added when missing. Only used when `risk_head_type="discrete"`.
        risk_baseline_grid_size (`int`, *optional*, defaults to 201):
            Number of time points on which the Cox head stores its fitted Breslow baseline cumulative hazard
            (the grid always contains every horizon exactly).
        diagnosis_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the diagnosis BCE in the health-profiling loss.
        risk_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the risk (survival) loss in the health-profiling loss.
        regression_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the continuous-trait regression loss in the health-profiling loss.
        regression_names (`list[str]`, *optional*):
            Continuous traits predicted by the optional regression head (e.g. `["age", "lvef"]`); `None` = no
            regression head.
        regression_target_mean (`list[float]`, *optional*):
            Per-trait mean used to standardise targets (the head predicts z-scores; outputs are in original
            units). Defaults to 0 for every trait.
        regression_target_std (`list[float]`, *optional*):
            Per-trait standard deviation (> 0) used with `regression_target_mean`. Defaults to 1.
        problem_type (`str`, *optional*, defaults to `"multi_label_classification"`):
            Loss of the diagnosis head. Only multi-label classification is supported.
        kwargs:
            Passed to [`PretrainedConfig`] (e.g. `architectures`), and any head-specific fields added by
            subclasses or later versions (kept as attributes).
    """

    model_type = "anyecg"

    def __init__(
        self,
        in_channels: int = 12,
        base_filters: int = 64,
        filter_list=(64, 160, 160, 400, 400, 1024, 1024),
        m_blocks_list=(2, 2, 2, 3, 3, 4, 4),
        kernel_size: int = 16,
        stride: int = 2,
        groups_width: int = 16,
        ratio: float = 1.0,
        use_se: bool = True,
        use_batch_norm: bool = False,
        dropout: float = 0.0,
        classifier_dropout: float = 0.0,
        sampling_rate: int = 500,
        num_samples: int = 5000,
        lead_names=STANDARD_12_LEADS,
        label_space=None,
        diagnosis_pos_weight=None,
        risk_label_space=None,
        risk_horizons=(1.0, 5.0, 10.0),
        risk_head_type: str = "cox",
        risk_time_bins=(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0),
        risk_baseline_grid_size: int = 201,
        diagnosis_loss_weight: float = 1.0,
        risk_loss_weight: float = 1.0,
        regression_loss_weight: float = 1.0,
        regression_names=None,
        regression_target_mean=None,
        regression_target_std=None,
        problem_type: str = "multi_label_classification",
        anyecg_version: str = ANYECG_VERSION,
        **kwargs,
    ):
        self.in_channels = int(in_channels)
        self.base_filters = int(base_filters)
        self.filter_list = [int(x) for x in filter_list]
        self.m_blocks_list = [int(x) for x in m_blocks_list]
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.groups_width = int(groups_width)
        self.ratio = float(ratio)
        self.use_se = bool(use_se)
        self.use_batch_norm = bool(use_batch_norm)
        self.dropout = float(dropout)
        self.classifier_dropout = float(classifier_dropout)
        self.sampling_rate = int(sampling_rate)
        self.num_samples = int(num_samples)
        self.lead_names = [str(x) for x in lead_names]
        self.risk_horizons = [float(h) for h in risk_horizons]
        self.risk_head_type = str(risk_head_type)
        self.risk_time_bins = [float(e) for e in risk_time_bins]
        if self.risk_time_bins and self.risk_time_bins[0] > 0:
            self.risk_time_bins = [0.0] + self.risk_time_bins
        self.risk_baseline_grid_size = int(risk_baseline_grid_size)
        self.diagnosis_loss_weight = float(diagnosis_loss_weight)
        self.risk_loss_weight = float(risk_loss_weight)
        self.regression_loss_weight = float(regression_loss_weight)
        self.regression_names = None if regression_names is None else [str(n) for n in regression_names]
        self.regression_target_mean = None if regression_target_mean is None else [float(v) for v in regression_target_mean]
        self.regression_target_std = None if regression_target_std is None else [float(v) for v in regression_target_std]
        self._validate_risk_and_regression()
        self.anyecg_version = anyecg_version
        self._validate_backbone()

        # The diagnosis label space is the single source of truth for id2label / label2id / num_labels.
        id2label = kwargs.pop("id2label", None)
        num_labels = kwargs.pop("num_labels", None)
        kwargs.pop("label2id", None)
        if label_space is None:
            if id2label is not None:
                label_space = LabelSpace.from_names([id2label[k] for k in sorted(id2label, key=int)])
            elif num_labels is not None:
                label_space = LabelSpace.generic(int(num_labels))
            else:
                label_space = LabelSpace.ecgfounder()
        label_space = _as_label_space(label_space, "label_space")
        if num_labels is not None and int(num_labels) != len(label_space):
            raise ValueError(
                f"num_labels={num_labels} does not match the label space ({len(label_space)} conditions); "
                "pass a label_space of the size you want instead."
            )
        self._label_rows = label_space.to_list()
        self._label_space_name = label_space.name
        self.risk_label_space = risk_label_space  # property: validates and stores rows
        self.diagnosis_pos_weight = None if diagnosis_pos_weight is None else [float(w) for w in diagnosis_pos_weight]
        if self.diagnosis_pos_weight is not None and len(self.diagnosis_pos_weight) != len(label_space):
            raise ValueError(
                f"diagnosis_pos_weight has {len(self.diagnosis_pos_weight)} entries for {len(label_space)} conditions."
            )
        if problem_type not in (None, "multi_label_classification"):
            raise ValueError(
                f"problem_type={problem_type!r} is not supported: AnyECG diagnosis heads are multi-label "
                "(problem_type='multi_label_classification')."
            )
        if kwargs.get("architectures") is None:
            kwargs["architectures"] = []  # transformers' AutoModel head selection iterates over it
        super().__init__(
            id2label=label_space.id2label(),
            label2id=label_space.label2id(),
            problem_type="multi_label_classification",
            **kwargs,
        )

    # ------------------------------------------------------------------ label spaces
    @property
    def label_space(self) -> LabelSpace:
        """The diagnosis label space (what `id2label` mirrors)."""
        return LabelSpace(self._label_rows, name=self._label_space_name)

    @label_space.setter
    def label_space(self, value) -> None:
        space = _as_label_space(value, "label_space")
        if self.diagnosis_pos_weight is not None and len(self.diagnosis_pos_weight) != len(space):
            self.diagnosis_pos_weight = None
        self._label_rows = space.to_list()
        self._label_space_name = space.name
        self.id2label = space.id2label()
        self.label2id = space.label2id()

    @property
    def risk_label_space(self) -> LabelSpace | None:
        rows = getattr(self, "_risk_label_rows", None)
        return None if rows is None else LabelSpace(rows, name=getattr(self, "_risk_label_space_name", None))

    @risk_label_space.setter
    def risk_label_space(self, value) -> None:
        if value is None:
            self._risk_label_rows = None
            self._risk_label_space_name = None
            return
        space = _as_label_space(value, "risk_label_space")
        self._risk_label_rows = space.to_list()
        self._risk_label_space_name = space.name

    # ------------------------------------------------------------------ remote-code pipelines
    @property
    def custom_pipelines(self) -> dict:
        """The `ecg-*` pipelines whose code the saved folder carries (config.json `custom_pipelines`; see
        `anyecg_hf.remote_code`), which `transformers.pipeline(task, model=folder, trust_remote_code=True)` loads
        where anyecg_hf is not installed. Tasks already in transformers' `PIPELINE_REGISTRY` (registered by
        `import anyecg_hf`) are left out: transformers would otherwise demand `trust_remote_code` for them and
        ignore the installed classes."""
        stored = getattr(self, "_custom_pipelines", None) or {}
        registry = getattr(sys.modules.get("transformers.pipelines"), "PIPELINE_REGISTRY", None)
        registered = set(registry.supported_tasks) if registry is not None else set()
        return {task: spec for task, spec in stored.items() if task not in registered}

    @custom_pipelines.setter
    def custom_pipelines(self, value) -> None:
        self._custom_pipelines = dict(value) if value else None

    @property
    def num_labels(self) -> int:
        return len(self.id2label) if getattr(self, "id2label", None) is not None else 0

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        # transformers sets num_labels in several places; a label space must never be silently replaced.
        if getattr(self, "id2label", None) is not None and int(value) != len(self.id2label):
            raise ValueError(
                f"Cannot set num_labels={value}: the config has a label space of {len(self.id2label)} conditions. "
                "Assign `config.label_space = LabelSpace(...)` to change the outputs."
            )

    @property
    def hidden_size(self) -> int:
        """Size of the pooled ECG embedding."""
        return self.filter_list[-1]

    @property
    def num_leads(self) -> int:
        return self.in_channels

    # ------------------------------------------------------------------ serialisation
    def to_dict(self):
        out = super().to_dict()
        for private, public in (
            ("_label_rows", "label_space"),
            ("_label_space_name", "label_space_name"),
            ("_risk_label_rows", "risk_label_space"),
            ("_risk_label_space_name", "risk_label_space_name"),
        ):
            out.pop(private, None)
            out[public] = getattr(self, private, None)
        out.pop("_custom_pipelines", None)
        if getattr(self, "_custom_pipelines", None):
            out["custom_pipelines"] = self._custom_pipelines
        return out

    def to_diff_dict(self):
        # Always write the full backbone description and both label spaces, even when they equal the defaults,
        # so config.json is self-describing for other tools and future versions.
        out = super().to_diff_dict()
        full = self.to_dict()
        for key in _ALWAYS_SERIALISED:
            out[key] = full[key]
        return out

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        config_dict = dict(config_dict)
        name = config_dict.pop("label_space_name", None)
        risk_name = config_dict.pop("risk_label_space_name", None)
        if isinstance(config_dict.get("label_space"), list):
            config_dict["label_space"] = LabelSpace(config_dict["label_space"], name=name)
            config_dict.pop("id2label", None)  # derived from the label space
            config_dict.pop("label2id", None)
        if isinstance(config_dict.get("risk_label_space"), list):
            config_dict["risk_label_space"] = LabelSpace(config_dict["risk_label_space"], name=risk_name)
        return super().from_dict(config_dict, **kwargs)

    def _validate_risk_and_regression(self) -> None:
        problems = []
        if self.risk_head_type not in ("cox", "discrete"):
            problems.append(f"risk_head_type={self.risk_head_type!r} (expected 'cox' or 'discrete')")
        if any(not (h > 0 and h == h and h != float("inf")) for h in self.risk_horizons):
            problems.append(f"risk_horizons must be positive finite years, got {self.risk_horizons}")
        bins = self.risk_time_bins
        if len(bins) < 2 or bins[0] < 0 or any(b <= a for a, b in zip(bins, bins[1:])) or bins[-1] == float("inf"):
            problems.append(f"risk_time_bins must be >= 2 strictly increasing finite edges from 0 (years), got {bins}")
        if self.risk_baseline_grid_size < len(self.risk_horizons) + 2:
            problems.append(f"risk_baseline_grid_size={self.risk_baseline_grid_size} is too small for {len(self.risk_horizons)} horizons")
        names = self.regression_names
        if names is not None:
            if not names or len(set(names)) != len(names):
                problems.append(f"regression_names must be non-empty and unique, got {names}")
            for what, values in (("regression_target_mean", self.regression_target_mean), ("regression_target_std", self.regression_target_std)):
                if values is not None and len(values) != len(names):
                    problems.append(f"{what} has {len(values)} entries for {len(names)} regression_names")
            if self.regression_target_std is not None and any(not v > 0 for v in self.regression_target_std):
                problems.append(f"regression_target_std must be > 0, got {self.regression_target_std}")
        elif self.regression_target_mean is not None or self.regression_target_std is not None:
            problems.append("regression_target_mean/std given without regression_names")
        if problems:
            raise ValueError("Invalid AnyECGConfig: " + "; ".join(problems) + ".")

    def _validate_backbone(self) -> None:
        problems = []
        if len(self.filter_list) != len(self.m_blocks_list) or not self.filter_list:
            problems.append(
                f"filter_list ({len(self.filter_list)} stages) and m_blocks_list ({len(self.m_blocks_list)}) "
                "must be non-empty and of equal length"
            )
        if any(b < 1 for b in self.m_blocks_list):
            problems.append("every stage needs at least one block")
        for width in self.filter_list:
            middle = int(width * self.ratio)
            if middle % self.groups_width or middle < self.groups_width:
                problems.append(f"stage width {width} x ratio {self.ratio} is not a multiple of groups_width {self.groups_width}")
            if self.use_se and width < 2:
                problems.append(f"stage width {width} is too small for squeeze-excitation")
        if self.in_channels != len(self.lead_names):
            problems.append(f"in_channels={self.in_channels} but {len(self.lead_names)} lead_names {self.lead_names}")
        if self.kernel_size < self.stride or self.stride < 1:
            problems.append(f"kernel_size={self.kernel_size} must be >= stride={self.stride} >= 1")
        if self.sampling_rate <= 0 or self.num_samples <= 0:
            problems.append("sampling_rate and num_samples must be positive")
        if problems:
            raise ValueError("Invalid AnyECGConfig: " + "; ".join(problems) + ".")


_ALWAYS_SERIALISED = (
    "in_channels", "base_filters", "filter_list", "m_blocks_list", "kernel_size", "stride", "groups_width",
    "ratio", "use_se", "use_batch_norm", "sampling_rate", "num_samples", "lead_names", "label_space",
    "label_space_name", "risk_label_space", "risk_label_space_name", "risk_horizons", "anyecg_version",
    "id2label", "label2id", "problem_type",
    "risk_head_type", "risk_time_bins", "risk_baseline_grid_size", "regression_names",
)


def _as_label_space(value, what: str) -> LabelSpace:
    if isinstance(value, LabelSpace):
        return value
    if isinstance(value, (list, tuple)):
        return LabelSpace(value)
    if isinstance(value, dict) and "conditions" in value:
        return LabelSpace(value["conditions"], name=value.get("name"))
    raise ValueError(f"{what} must be a LabelSpace or a list of condition dicts, got {type(value).__name__}.")
