"""The code a saved folder carries so that the feature extractor and the `ecg-*` pipelines load with
`trust_remote_code=True` where anyecg_hf is not installed (the model's code travels by transformers' own
`register_for_auto_class`, because its modules already live in one folder, `anyecg_hf/modeling`).

Why by hand: transformers copies a custom class's file and the files it names in `from .name import ...` lines of
the same folder (`dynamic_module_utils.get_relative_imports`), nothing else. The feature extractor and the
pipelines use modules of several subpackages (`processing`, `io.plausibility`, `leads`, `prediction`, `runtime`,
`pipelines`), which neither transformers nor huggingface_hub can bundle. `write_remote_code` writes flat copies of
the modules listed in `REMOTE_MODULES`, with every package-relative import rewritten to the copy's flat name:

* an import of a listed module becomes `from .<flat name> import ...`;
* an import of any other package module is allowed only inside a `try` block (transformers' requirement check
  skips those) and becomes an absolute `anyecg_hf.` import, so a copy uses the package where it is installed and
  says what needs it where it is not (reading files, ONNX);
* each copy ends with an `if False:` block naming all the listed files it needs, directly or not, because
  transformers copies only the files its entry file names (some releases: the direct imports only) and does not see
  `from . import filters`.

Anything else is an error when the folder is written, so a change that breaks remote loading fails in the tests
(`tests/test_remote_code.py`) rather than on a user's machine.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path

__all__ = ["REMOTE_MODULES", "FEATURE_EXTRACTOR_AUTO_MAP", "custom_pipelines", "save_model_with_code",
           "save_feature_extractor_with_code", "write_remote_code"]

# package module -> file name (without .py) in a saved folder; the model's files (configuration_anyecg,
# modeling_anyecg, layers, ...) are written by transformers under their own names, none of which is used here.
REMOTE_MODULES = {
    "anyecg_hf.leads": "leads",
    "anyecg_hf.io.plausibility": "plausibility",
    "anyecg_hf.processing.reference": "reference",
    "anyecg_hf.processing.resampling": "resampling",
    "anyecg_hf.processing.filters": "filters",
    "anyecg_hf.processing.ecg_inputs": "ecg_inputs",
    "anyecg_hf.processing.quality": "quality",
    "anyecg_hf.processing.feature_extraction_anyecg": "feature_extraction_anyecg",
    "anyecg_hf.prediction.inputs": "prediction_inputs",
    "anyecg_hf.prediction.windows": "prediction_windows",
    "anyecg_hf.prediction.profiles": "prediction_profiles",
    "anyecg_hf.runtime.precision": "precision",
    "anyecg_hf.pipelines.base": "pipeline_base",
    "anyecg_hf.pipelines.classification": "pipeline_classification",
    "anyecg_hf.pipelines.embedding": "pipeline_embedding",
    "anyecg_hf.pipelines.profiling": "pipeline_profiling",
}
_FEATURE_EXTRACTOR_MODULE = "anyecg_hf.processing.feature_extraction_anyecg"
FEATURE_EXTRACTOR_AUTO_MAP = {"AutoFeatureExtractor": "feature_extraction_anyecg.AnyECGFeatureExtractor"}


class RemoteCodeError(RuntimeError):
    """A module listed in `REMOTE_MODULES` imports something its flat copy could not import."""


def custom_pipelines() -> dict:
    """The `custom_pipelines` entry of config.json: each `ecg-*` task's class in the folder's copy, loaded with
    transformers' `AutoModel` (the form `Pipeline.save_pretrained` writes for a registered custom pipeline)."""
    from .pipelines import TASKS

    return {task: {"impl": f"{REMOTE_MODULES[module]}.{cls}", "pt": ["AutoModel"], "tf": [], "type": "multimodal"}
            for task, (module, cls) in TASKS.items()}


def _source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin).read_text(encoding="utf-8")


def _inside_try(tree: ast.AST) -> set[int]:
    """Ids of the import nodes that sit in the body of a `try` statement."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for inner in node.body:
                out.update(id(n) for n in ast.walk(inner) if isinstance(n, ast.ImportFrom))
    return out


def _flat_copy(module: str) -> tuple[str, set[str]]:
    """The flat copy of `module` and the listed modules it imports directly."""
    text = _source(module)
    tree = ast.parse(text)
    guarded = _inside_try(tree)
    package = module.rpartition(".")[0]
    lines = text.splitlines(keepends=True)
    needs: set[str] = set()
    edits = []  # (first line, last line, replacement)
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
        indent = lines[node.lineno - 1][: node.col_offset]
        if node.module is None:  # `from . import filters`: each name is a module
            targets = [f"{base}.{a.name}" for a in node.names]
            if all(t in REMOTE_MODULES for t in targets):
                needs.update(targets)
                flat = [_alias(REMOTE_MODULES[t], a.asname or a.name) for t, a in zip(targets, node.names)]
                new = f"{indent}from . import {', '.join(flat)}\n"
            elif id(node) in guarded:
                new = f"{indent}from {base} import {names}\n"
            else:
                raise RemoteCodeError(f"{module} line {node.lineno}: `from . import` of a module outside REMOTE_MODULES")
        elif base in REMOTE_MODULES:
            needs.add(base)
            new = f"{indent}from .{REMOTE_MODULES[base]} import {names}\n"
        elif id(node) in guarded:
            new = f"{indent}from {base} import {names}\n"
        else:
            raise RemoteCodeError(
                f"{module} line {node.lineno} imports {base}, which a saved folder does not carry: import it from a "
                "module listed in anyecg_hf.remote_code.REMOTE_MODULES, or inside a `try` block")
        edits.append((node.lineno, node.end_lineno, new))
    for first, last, new in sorted(edits, reverse=True):
        lines[first - 1 : last] = [new]
    return "".join(lines), needs


def _alias(flat: str, bound: str) -> str:
    """`from . import` item binding the flat file `flat` to the name the original code uses."""
    return flat if flat == bound else f"{flat} as {bound}"


def write_remote_code(folder, modules=None) -> list[str]:
    """Write the flat copies of `modules` (package module names; default all of `REMOTE_MODULES`) and of the
    listed modules they need into `folder`; returns the file names written."""
    copies: dict[str, tuple[str, set[str]]] = {}  # only the modules reached are read and checked

    def closure(roots) -> list[str]:
        seen, todo = set(), list(roots)
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                if m not in copies:
                    copies[m] = _flat_copy(m)
                todo.extend(copies[m][1])
        return [m for m in REMOTE_MODULES if m in seen]

    wanted = closure(modules or list(REMOTE_MODULES))
    os.makedirs(folder, exist_ok=True)
    written = []
    for module in wanted:
        text, _ = copies[module]
        others = [REMOTE_MODULES[m] for m in closure([module]) if m != module]
        if others:  # transformers copies the files named in `from .x import` lines; name the whole closure
            text = text.rstrip("\n") + "\n\n\nif False:  # written by anyecg_hf.remote_code: the files this copy needs\n"
            text += "".join(f"    from .{name} import __name__ as _  # noqa: F401\n" for name in others)
        name = REMOTE_MODULES[module] + ".py"
        Path(folder, name).write_text(f"# Copy of {module} (anyecg_hf), written for trust_remote_code.\n" + text,
                                      encoding="utf-8")
        written.append(name)
    return written


def _hub_arguments(save_directory, kwargs: dict) -> tuple[str, dict]:
    """transformers' `save_pretrained(..., push_to_hub=True)` uploads only the files written inside its own call, so
    the code written after it would be left out: save first, then push with the public `push_to_hub`, which saves
    into a temporary folder (with the code) and uploads everything. Pops and returns `(repo_id, push_to_hub kwargs)`."""
    repo_id = kwargs.pop("repo_id", os.path.basename(os.path.normpath(os.fspath(save_directory))))
    hub = {k: kwargs.pop(k) for k in ("commit_message", "commit_description", "private", "token", "revision",
                                      "create_pr", "tags") if k in kwargs}
    return repo_id, hub


def save_feature_extractor_with_code(extractor, save, save_directory, push_to_hub=False, **kwargs):
    """`FeatureExtractionMixin.save_pretrained` (`save`, bound) plus the extractor's code and its `auto_map`."""
    repo = _hub_arguments(save_directory, kwargs) if push_to_hub else None
    extractor.auto_map = dict(FEATURE_EXTRACTOR_AUTO_MAP)
    out = save(save_directory, **kwargs)
    write_remote_code(save_directory, [_FEATURE_EXTRACTOR_MODULE])
    if repo is not None:
        extractor.push_to_hub(repo[0], **repo[1])
    return out


def save_model_with_code(model, save, save_directory, *args, push_to_hub=False, **kwargs):
    """`PreTrainedModel.save_pretrained` (`save`, bound) plus a `preprocessor_config.json` matching the config when
    the folder has none, and the feature extractor's and pipelines' code with `custom_pipelines` in config.json."""
    repo = _hub_arguments(save_directory, kwargs) if push_to_hub else None
    model.config.custom_pipelines = custom_pipelines()
    out = save(save_directory, *args, **kwargs)
    if kwargs.get("is_main_process", True):
        if not os.path.exists(os.path.join(save_directory, "preprocessor_config.json")):
            from .processing import AnyECGFeatureExtractor

            AnyECGFeatureExtractor.from_model_config(model.config).save_pretrained(save_directory)
        write_remote_code(save_directory)
    if repo is not None:
        model.push_to_hub(repo[0], **repo[1])
    return out
