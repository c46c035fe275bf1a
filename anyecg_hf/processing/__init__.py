"""Preprocessing: `AnyECGFeatureExtractor` (raw ECG -> model inputs) and signal-quality flags."""

from .feature_extraction_anyecg import AnyECGFeatureExtractor
from .quality import QualityFlag, signal_quality

__all__ = ["AnyECGFeatureExtractor", "QualityFlag", "signal_quality"]
