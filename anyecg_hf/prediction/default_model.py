"""The default model: the public 12-lead ECGFounder checkpoint, converted on first use and cached.

`PKUDigitalHealth/ECGFounder` holds only the original `.pth` files, no transformers files, so the default cannot
be a `PIPELINE_REGISTRY` model id. `resolve_model()` is the factory: it downloads `12_lead_ECGFounder.pth` with
`hf_hub_download`, converts it with `AnyECGForDiagnosis.from_ecgfounder`, and writes a normal `save_pretrained`
folder (`config.json`, `model.safetensors`, `preprocessor_config.json`) into the Hugging Face cache::

    $HF_HOME/anyecg_hf/ecgfounder-12lead-<revision>/

Later calls return that folder at once, with or without network. Offline (`HF_HUB_OFFLINE=1`, or the Hub cannot be
reached) with nothing cached, it raises `DefaultModelUnavailableError` within seconds with a message that says what
to do, instead of waiting for `hf_hub_download`'s retries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

from ..files import sha256_file

DEFAULT_MODEL_ID = "PKUDigitalHealth/ECGFounder"
DEFAULT_FILENAMES = {12: "12_lead_ECGFounder.pth", 1: "1_lead_ECGFounder.pth"}
# Aliases that select the factory rather than a transformers-format repo.
_DEFAULT_ALIASES = {None, "", "default", DEFAULT_MODEL_ID, DEFAULT_MODEL_ID.lower()}


def is_default_model(model) -> bool:
    """Whether `model` selects the default ECGFounder model (`None`, `""`, `"default"` or its Hub id, any case)."""
    return model in _DEFAULT_ALIASES or (isinstance(model, str) and model.lower() in _DEFAULT_ALIASES)

_REQUIRED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
_SOURCE_FILE = "anyecg_source.json"
_PROBE_TIMEOUT_S = 3.0  # connectivity probe before any download (env ANYECG_HUB_PROBE_TIMEOUT)


class DefaultModelUnavailableError(OSError):
    """The default model is not cached and cannot be downloaded now (offline, Hub unreachable, download failed).

    The message says what to do: pass `--model PATH` (a converted folder, e.g. from `anyecg convert-ecgfounder`),
    unset `HF_HUB_OFFLINE` / restore network access, and where the cache is.
    """


class ModelNotFoundError(OSError):
    """`--model` names a local folder that does not exist or holds no model, or a Hub id that is not cached while the
    Hub cannot be reached. Raised before any download is tried (the message names the folder or id)."""


_HUB_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def looks_like_local_path(model: str) -> bool:
    """True when `model` can only mean a local path, so it must never be sent to the Hub: it exists, starts with
    `./`, `../`, `/` or `~`, or contains a path separator without being a Hub id `org/name`."""
    if os.path.exists(model) or model in (".", "..", "~"):
        return True
    if model.startswith(("./", "../", "/", "~", ".\\", "..\\")):
        return True
    if os.sep in model or "/" in model or (os.altsep and os.altsep in model):
        parts = model.split("/")
        return not (len(parts) == 2 and all(_HUB_PART.fullmatch(part) for part in parts))
    return False


def check_model_source(model: str, revision: str | None = None) -> str:
    """Fail fast (well under 3 s, no Hub retries) when `model` cannot be loaded from where it points; return the
    string to pass to `from_pretrained` (`~` expanded).

    * a local-looking path (`looks_like_local_path`) must be an existing model folder (with `config.json`);
    * anything else is a Hub id: fine when it is in the Hub cache; otherwise `HF_HUB_OFFLINE` or a failed
      connectivity probe (`hub_reachable`, at most `ANYECG_HUB_PROBE_TIMEOUT` s) raises at once.

    Raises:
        ModelNotFoundError (an `OSError`): with a message that names the folder or id and what to do.
    """
    if looks_like_local_path(model):
        path = os.path.expanduser(model)
        if not os.path.exists(path):
            raise ModelNotFoundError(f"model folder {model!r} does not exist ({os.path.abspath(path)}). Pass an "
                                     "existing folder (config.json + model.safetensors), e.g. one written by "
                                     "`anyecg convert-ecgfounder CHECKPOINT.pth FOLDER`, or a Hub id `org/name`.")
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
            raise ModelNotFoundError(f"{model!r} is a folder but not a model folder: it has no config.json "
                                     f"({os.path.abspath(path)}).")
        return path
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "config.json", revision=revision)
    except ValueError as err:  # not a valid repo id either
        raise ModelNotFoundError(f"{model!r} is neither a local folder nor a valid Hub id ({err}).") from None
    if isinstance(cached, str):
        return model
    if _offline_env():
        raise ModelNotFoundError(f"{model!r} is not a local folder, and the Hub model {model!r} is not in the cache "
                                 "while HF_HUB_OFFLINE is set. Pass --model with an existing model folder.")
    ok, why = hub_reachable()
    if not ok:
        raise ModelNotFoundError(f"{model!r} is not a local folder, and the Hub ({_hub_endpoint()}) cannot be reached "
                                 f"({why}) to fetch the model {model!r}, which is not in the cache. Pass --model with an "
                                 "existing model folder.")
    return model


def default_cache_dir() -> Path:
    """Where converted default models live: `$ANYECG_CACHE` if set, else `$HF_HOME/anyecg_hf` (HF_HOME defaults to
    `~/.cache/huggingface`). Read from the environment on every call."""
    env = os.environ.get("ANYECG_CACHE")
    if env:
        return Path(env).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(hf_home).expanduser() / "anyecg_hf"


def default_model_dir(revision: str | None = None, leads: int = 12, cache_dir=None) -> Path:
    """Folder of the converted default model for `revision` (default `main`) and `leads` (12 or 1)."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", revision or "main")
    return Path(cache_dir or default_cache_dir()) / f"ecgfounder-{leads}lead-{label}"


def is_model_folder(path) -> bool:
    """True when `path` is a complete converted folder (all of config.json, model.safetensors,
    preprocessor_config.json)."""
    return all(os.path.isfile(os.path.join(path, f)) for f in _REQUIRED_FILES)


def _offline_env() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "")
    if value.upper() in ("1", "ON", "YES", "TRUE"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover
        return False


def _hub_endpoint() -> str:
    env = os.environ.get("HF_ENDPOINT")
    if env:
        return env.rstrip("/")
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def hub_reachable(timeout: float | None = None) -> tuple[bool, str]:
    """Quick TCP probe of the Hub endpoint (DNS + connect) bounded by `timeout` seconds in total.

    `getaddrinfo` has no timeout of its own, so the probe runs in a daemon thread that is abandoned when the time is
    up. Returns `(reachable, reason)`.
    """
    if timeout is None:
        timeout = float(os.environ.get("ANYECG_HUB_PROBE_TIMEOUT", _PROBE_TIMEOUT_S))
    url = urlparse(_hub_endpoint())
    host = url.hostname
    port = url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return False, f"invalid Hub endpoint {_hub_endpoint()!r}"
    result: dict = {}

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result["ok"] = True
        except OSError as err:
            result["error"] = f"{type(err).__name__}: {err}"

    thread = threading.Thread(target=probe, name="anyecg-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if result.get("ok"):
        return True, ""
    return False, result.get("error", f"no answer from {host}:{port} within {timeout:g} s")


def _unavailable(reason: str, target: Path, leads: int, revision: str | None) -> DefaultModelUnavailableError:
    filename = DEFAULT_FILENAMES[leads]
    hub_cache = os.environ.get("HF_HUB_CACHE") or str(Path(default_cache_dir()).parent / "hub")
    return DefaultModelUnavailableError(
        f"The default ECG model ({DEFAULT_MODEL_ID}, {filename}"
        f"{'' if revision in (None, 'main') else ', revision ' + revision}) is not available: {reason}.\n"
        f"It is not in the cache ({target}), and it cannot be downloaded now. Do one of:\n"
        f"  * use a model folder you already have: --model PATH (Python: model=PATH). Make one from a downloaded "
        f"checkpoint with `anyecg convert-ecgfounder {filename} PATH`;\n"
        f"  * connect to the internet (and unset HF_HUB_OFFLINE if it is set) and run again: the checkpoint is "
        f"downloaded once and converted into {target};\n"
        f"  * or copy that folder from a machine that has it (set HF_HOME or ANYECG_CACHE to move the cache; "
        f"the Hub download cache is {hub_cache})."
    )


def resolve_model(model=None, *, revision: str | None = None, leads: int = 12, cache_dir=None, force: bool = False):
    """Return something `from_pretrained` loads: `model` itself, or the path of the converted default model.

    Args:
        model (`str`, `os.PathLike` or `None`):
            * `None`, `"default"` or `"PKUDigitalHealth/ECGFounder"`: the default model, produced by the factory
              (download `12_lead_ECGFounder.pth`, convert, cache; see the module docstring);
            * a local `.pth`/`.pt` ECGFounder checkpoint: converted once into the cache (keyed by the file's SHA-256)
              and that folder returned;
            * anything else (a local model folder, a Hub id of a transformers-format repo): checked with
              `check_model_source` (a missing local folder, or an uncached Hub id while offline, raises
              `ModelNotFoundError` at once instead of after the Hub client's retries) and returned.
        revision (`str`, *optional*): Hub revision of the default checkpoint (branch, tag or commit).
        leads (`int`, defaults to 12): 12 or 1, which ECGFounder checkpoint the default is.
        cache_dir (*optional*): where converted folders go (default `default_cache_dir()`).
        force (`bool`): convert again even when the folder exists.

    Raises:
        DefaultModelUnavailableError (an `OSError`): offline / Hub unreachable with nothing cached, or the download
            failed. Raised within seconds (`HF_HUB_OFFLINE` is checked first, then a cache-only lookup, then a
            connectivity probe of at most `ANYECG_HUB_PROBE_TIMEOUT` = 3 s).
    """
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not is_default_model(model):
        if isinstance(model, str) and os.path.isfile(model) and model.lower().endswith((".pth", ".pt")):
            return str(_convert_local_checkpoint(model, cache_dir=cache_dir, force=force))
        return check_model_source(model, revision=revision) if isinstance(model, str) else model
    if leads not in DEFAULT_FILENAMES:
        raise ValueError(f"leads must be 12 or 1 for the default ECGFounder model, got {leads}.")
    target = default_model_dir(revision, leads, cache_dir)
    if not force and is_model_folder(target):
        return str(target)

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    filename = DEFAULT_FILENAMES[leads]
    pth = _cached_checkpoint_or_fail(target, leads, revision)  # raises at once when offline / unreachable
    if pth is None:
        try:
            # the endpoint the probe just reached (HF_ENDPOINT read now, not when huggingface_hub was imported)
            pth = hf_hub_download(DEFAULT_MODEL_ID, filename, revision=revision, endpoint=_hub_endpoint())
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
            raise _unavailable(f"downloading failed ({type(err).__name__}: {str(err).splitlines()[0][:300]})",
                               target, leads, revision) from None
    _convert_into(pth, target, source={"repo_id": DEFAULT_MODEL_ID, "filename": filename, "revision": revision or "main",
                                       "checkpoint": str(pth)})
    return str(target)


def _cached_checkpoint_or_fail(target: Path, leads: int, revision: str | None) -> str | None:
    """The default checkpoint from the Hub cache (it converts without network), or `None` when it must be downloaded
    and the Hub is reachable; raises `DefaultModelUnavailableError` at once when offline or unreachable (rather than
    after the client's retries)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return hf_hub_download(DEFAULT_MODEL_ID, DEFAULT_FILENAMES[leads], revision=revision, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        pass
    if _offline_env():
        raise _unavailable("HF_HUB_OFFLINE is set", target, leads, revision)
    ok, why = hub_reachable()
    if not ok:
        raise _unavailable(f"the Hub ({_hub_endpoint()}) cannot be reached ({why})", target, leads, revision)
    return None


def check_default_model(revision: str | None = None, leads: int = 12, cache_dir=None) -> None:
    """Raise `DefaultModelUnavailableError` now when the default model is neither converted, nor in the Hub cache,
    nor downloadable (offline / Hub unreachable): what `resolve_model` would raise, without importing torch, so a
    command fails before its heavy imports."""
    target = default_model_dir(revision, leads, cache_dir)
    if leads in DEFAULT_FILENAMES and not is_model_folder(target):
        _cached_checkpoint_or_fail(target, leads, revision)


def _convert_local_checkpoint(path: str, cache_dir=None, force: bool = False) -> Path:
    digest = sha256_file(path)
    target = Path(cache_dir or default_cache_dir()) / f"converted-{digest[:16]}"
    if force or not is_model_folder(target):
        _convert_into(path, target, source={"checkpoint": os.path.abspath(path), "sha256": digest})
    return target


def _convert_into(pth: str, target: Path, source: dict) -> None:
    """Convert an ECGFounder `.pth` into `target` atomically (temp folder in the same parent, then rename), so a
    killed conversion never leaves a half-written model that later runs would trust."""
    from ..modeling import AnyECGForDiagnosis

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    model = AnyECGForDiagnosis.from_ecgfounder(pth)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        (tmp / _SOURCE_FILE).write_text(json.dumps(dict(source, sha256=source.get("sha256") or sha256_file(pth)), indent=2))
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not is_model_folder(target):  # another process won the race with a complete folder otherwise
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_model_and_extractor(model=None, device=None, *, revision: str | None = None, **model_kwargs):
    """Load a model (head from `config.architectures`) and its feature extractor, ready for inference.

    Args:
        model: a loaded `PreTrainedModel`, or anything `resolve_model` accepts (`None` = the default model).
        device (`str`, `int` or `torch.device`, *optional*): where to put the model (default: stays on CPU).
        revision (`str`, *optional*): Hub revision (of the repo, or of the default checkpoint).
        model_kwargs: passed to `AutoModel.from_pretrained`.

    Returns:
        `(model, feature_extractor)`: the model in eval mode; the folder's `AnyECGFeatureExtractor`, or one built with
        `AnyECGFeatureExtractor.from_model_config(model.config)` when the folder has no `preprocessor_config.json`.
    """
    import torch
    from transformers import AutoFeatureExtractor, PreTrainedModel

    from ..modeling.loading import load_checked
    from ..processing import AnyECGFeatureExtractor

    if isinstance(model, PreTrainedModel):
        loaded, source = model, getattr(model, "name_or_path", None)
    else:
        default = is_default_model(model)
        source = resolve_model(model, revision=revision)
        kwargs = dict(model_kwargs)
        if revision is not None and not default and not os.path.isdir(str(source)):
            kwargs["revision"] = revision
        loaded = load_checked(source, **kwargs)  # missing / non-finite tensors refused, one-line errors
    extractor = None
    if source is not None and not isinstance(model, PreTrainedModel):
        try:
            extractor = AutoFeatureExtractor.from_pretrained(source)
        except (OSError, ValueError):
            extractor = None
        if extractor is not None and not isinstance(extractor, AnyECGFeatureExtractor):
            extractor = None
    if extractor is None:
        extractor = AnyECGFeatureExtractor.from_model_config(loaded.config)
    loaded.eval()
    if device is not None:
        loaded.to(torch.device(device) if not isinstance(device, int) else torch.device("cuda", device) if device >= 0 else "cpu")
    return loaded, extractor
