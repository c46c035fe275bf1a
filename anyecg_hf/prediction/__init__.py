"""The prediction core: the one place where records become model inputs (with their quality warnings and errors),
where model outputs become named probabilities / risks / traits, and where the windows of a long record are
aggregated. The pipelines, the archive engine (`anyecg profile/embed`) and dataset evaluation call it.

* `prepare_records(records, feature_extractor)` -> one `PreparedRecord` (inputs, warnings, error) per record;
* `model.named_outputs(outputs)` (on every AnyECG model) / `window_outputs(model, outputs, task)` (numpy);
* `aggregate_windows(values, window_to_record, how)`: one row per record;
* `profile_records` / `profile_rows`: a record's profile and its table rows;
* `resolve_model` / `load_model_and_extractor`: the model (and the default ECGFounder model) to predict with.

Flow: io -> processing -> modeling -> prediction -> pipelines / archive / evaluation / training. Importing this
package costs numpy only (torch and transformers are imported when a model is loaded).
"""

from .default_model import (
    DEFAULT_MODEL_ID,
    DefaultModelUnavailableError,
    ModelNotFoundError,
    check_model_source,
    default_cache_dir,
    is_default_model,
    load_model_and_extractor,
    resolve_model,
)
from .inputs import MODEL_INPUT_KEYS, PreparedRecord, caught_messages, prepare_records, strip_record_prefix
from .profiles import PROFILE_ROW_COLUMNS, horizon_key, profile_records, profile_rows
from .windows import aggregate_windows, window_outputs

__all__ = [
    "DEFAULT_MODEL_ID",
    "DefaultModelUnavailableError",
    "MODEL_INPUT_KEYS",
    "ModelNotFoundError",
    "check_model_source",
    "PROFILE_ROW_COLUMNS",
    "PreparedRecord",
    "aggregate_windows",
    "caught_messages",
    "default_cache_dir",
    "horizon_key",
    "is_default_model",
    "load_model_and_extractor",
    "prepare_records",
    "profile_records",
    "profile_rows",
    "resolve_model",
    "strip_record_prefix",
    "window_outputs",
]
