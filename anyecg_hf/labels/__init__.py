"""Label vocabularies: crosswalks shipped as package data, dataset-to-model condition matching, and labels from
machine statements.

```python
from anyecg_hf.labels import crosswalk, label_statements
crosswalk("ecgfounder", "snomed")       # label, code_system, code, name, tier, source, note
label_statements(["Sinus bradycardia", "Otherwise normal ECG"]).labels
# ['SINUS BRADYCARDIA', 'otherwise normal ecg']
```
Importing this package does not import torch.
"""

from .crosswalk import (
    CINC_SCORED_UNMAPPABLE,
    IMPLIED_TIERS,
    TARGETS,
    TIERS,
    crosswalk,
    load_crosswalk,
    ptbxl_statements,
    resolve_crosswalk,
)
from .matching import AGGREGATES, ConditionMatch, aggregate_probabilities, match_conditions
from .statements import (
    KINDS,
    StatementLabels,
    StatementMatch,
    label_statements,
    normalize_statement,
    statement_coverage,
)

__all__ = [
    "AGGREGATES",
    "IMPLIED_TIERS",
    "KINDS",
    "TARGETS",
    "TIERS",
    "CINC_SCORED_UNMAPPABLE",
    "ConditionMatch",
    "StatementLabels",
    "StatementMatch",
    "aggregate_probabilities",
    "crosswalk",
    "label_statements",
    "load_crosswalk",
    "match_conditions",
    "normalize_statement",
    "ptbxl_statements",
    "resolve_crosswalk",
    "statement_coverage",
]
