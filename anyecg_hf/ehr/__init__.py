"""EHR extracts -> phecode targets for diagnosis and risk heads (`anyecg build-targets`); see docs/ehr.md.

Nothing here imports torch; DuckDB does the joins (`pip install duckdb`, part of the plain install).
"""

from .build import build_targets
from .inputs import EHRInputError, InputProblem
from .phecode_map import PhecodeMap, PhecodeMapError, load_phecode_map
from .targets import ConditionIndex, SparseTargets, cell_targets

__all__ = [
    "EHRInputError", "InputProblem", "PhecodeMap", "PhecodeMapError", "SparseTargets", "build_targets",
    "cell_targets", "ConditionIndex", "load_phecode_map",
]
