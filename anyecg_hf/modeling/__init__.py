"""Configuration, label spaces and models (backbone and heads)."""

from .configuration_anyecg import AnyECGConfig
from .label_space import Condition, LabelSpace
from .modeling_anyecg import (
    AnyECGDiagnosisOutput,
    AnyECGForDiagnosis,
    AnyECGModel,
    AnyECGModelOutput,
    AnyECGPreTrainedModel,
    masked_bce_with_logits,
)
from .modeling_anyecg_risk import (
    AnyECGForHealthProfiling,
    AnyECGForRiskPrediction,
    AnyECGHealthProfilingOutput,
    AnyECGRiskOutput,
)

# Classes that `AutoModel` may return, chosen by `config.architectures`; the first is the default.
AUTO_MODEL_CLASSES = (AnyECGModel, AnyECGForDiagnosis, AnyECGForRiskPrediction, AnyECGForHealthProfiling)

__all__ = [
    "AUTO_MODEL_CLASSES",
    "AnyECGConfig",
    "AnyECGDiagnosisOutput",
    "AnyECGForDiagnosis",
    "AnyECGForHealthProfiling",
    "AnyECGForRiskPrediction",
    "AnyECGHealthProfilingOutput",
    "AnyECGModel",
    "AnyECGModelOutput",
    "AnyECGPreTrainedModel",
    "AnyECGRiskOutput",
    "Condition",
    "LabelSpace",
    "masked_bce_with_logits",
]
