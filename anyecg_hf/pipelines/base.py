"""Shared machinery of the ECG pipelines: input handling, windowing, batching, head outputs.

Each input record (a file path, an `ECGRecord`, an array with `sampling_rate`, or a dict) is read and preprocessed by
the model's `AnyECGFeatureExtractor`; a record longer than the model's window gives several windows. The pipelines
are `ChunkPipeline`s: `preprocess` yields one item per window (the last one flagged `is_last`), transformers'
`DataLoader` machinery batches windows across records, and `postprocess` receives all windows of one record and
aggregates them. Inputs are therefore read one at a time, however many are passed: `pipe(paths, batch_size=64)` never
holds more than a few batches of signals in memory (results, which are small, are collected for a list input; pass
a generator to get an iterator instead).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from transformers.pipelines.base import ChunkPipeline, no_collate_fn
from transformers.pipelines.pt_utils import PipelineChunkIterator, PipelineIterator, PipelinePackIterator
from torch.utils.data import DataLoader

from ..prediction.inputs import MODEL_INPUT_KEYS, prepare_records
from ..prediction.windows import aggregate_windows
from ..runtime.precision import autocast, resolve_precision

_META_KEYS = ("is_last", "record", "warnings", "error", "source")
_ON_ERROR = ("raise", "return")


def _reader():
    """`(ECGRecord, read_ecg)` of `anyecg_hf.io`, or `(None, None)` where only a model folder's trust_remote_code
    copy of this module is available (arrays and dicts work there; files need the package)."""
    try:
        from ..io import ECGRecord, read_ecg
    except ImportError:
        return None, None
    return ECGRecord, read_ecg


def _is_pathlike(x) -> bool:
    return isinstance(x, (str, os.PathLike))


class ECGPipelineBase(ChunkPipeline):
    """Base of the ECG pipelines (not registered itself).

    Call arguments common to every ECG task:
        sampling_rate (`float`): sampling rate (Hz) of array inputs (required for arrays; files carry their own).
        lead_names (`list[str]`): lead order of array inputs (default: the model's `config.lead_names` when the
            row count matches) or of files that do not name their leads (CSV/NumPy).
        units (`str`): unit of array inputs (`"mV"` default, `"uV"`, ...).
        format (`str`): force a reader (`read_ecg(format=...)`) instead of detecting it.
        windowing (`str`, defaults to `"sliding"`): how a record longer than the model's window (`num_samples`,
            10 s) is cut: `"sliding"` = consecutive windows covering the whole record (stride `window_stride` of
            the feature extractor, default no overlap; the last window is aligned to the record's end), `"first"`
            or `"center"` = one window.
        aggregation (`str`): `"mean"` (default) or `"max"` over the windows of a long record.
        quality (`bool`, default `True`): add signal-quality warnings (flat / NaN / clipped / noisy leads, likely
            limb-lead reversal) to each result.
        on_error (`str`): `"raise"` (default) stops at an unreadable or invalid input; `"return"` gives a result
            with an `"error"` message for that input and goes on (what batch jobs want).
        batch_size, num_workers, device: as in every transformers pipeline (windows are batched across records).
        precision (`str`, defaults to `"fp32"`): `"bf16"` / `"fp16"` run the model under autocast, `"auto"` = bf16
            where the device has it natively (`anyecg_hf.runtime.precision.resolve_precision`); at construction
            (`pipeline(..., precision="bf16")`) or per call. Not for `onnx_model`.
        onnx_model (constructor only): path of an ONNX file exported from the same model (`anyecg export-onnx`), or an
            `anyecg_hf.export.OnnxECGModel`; the forward pass then runs on ONNX Runtime (CPU), which is faster at
            small batches and on shared CPUs (see docs/speed.md). Outputs match PyTorch to ~1e-6.
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = None  # optional: built from the model config when the folder has none
    _load_tokenizer = False

    def __init__(self, *args, onnx_model=None, **kwargs):
        super().__init__(*args, **kwargs)
        from ..processing.feature_extraction_anyecg import AnyECGFeatureExtractor

        # Optional ONNX Runtime backend (CPU): a path to a file written by `anyecg export-onnx` / `export_onnx`, or
        # an `OnnxECGModel`. The PyTorch model still provides the config, the head checks and risk-curve helpers.
        self.onnx_model = None
        if onnx_model is not None:
            try:  # the package's ONNX backend (not in a folder's trust_remote_code copy)
                from ..export import OnnxECGModel
            except ImportError as err:
                raise ImportError("onnx_model needs the anyecg_hf package: pip install anyecg_hf[onnx]") from err
            self.onnx_model = onnx_model if isinstance(onnx_model, OnnxECGModel) else OnnxECGModel(onnx_model)
            if self.onnx_model.config.to_dict()["label_space"] != self.model.config.to_dict()["label_space"]:
                raise ValueError("onnx_model was exported from a model with another label space than `model`.")

        # by name: a folder's trust_remote_code copy of the extractor is another class object than this module's
        if type(self.feature_extractor).__name__ != AnyECGFeatureExtractor.__name__:
            self.feature_extractor = AnyECGFeatureExtractor.from_model_config(self.model.config)
        self.model.eval()
        self._check_model()

    def _call_model(self, inputs):
        """The model's forward on a batch of windows: ONNX Runtime when `onnx_model` was given, else PyTorch."""
        if self.onnx_model is not None:
            return self.onnx_model(**{k: v.cpu() for k, v in inputs.items()})
        return self.model(**inputs, return_dict=True)

    # ------------------------------------------------------------------ model introspection
    def _check_model(self) -> None:
        """Raise a clear error when the model lacks the head this task needs (overridden by tasks)."""

    @property
    def has_diagnosis_head(self) -> bool:
        return self.model.heads["diagnosis"]

    @property
    def has_risk_head(self) -> bool:
        return self.model.heads["risk"]

    def _model_description(self) -> str:
        cfg = self.model.config
        return f"{type(self.model).__name__} ({getattr(cfg, 'name_or_path', '') or getattr(self.model, 'name_or_path', '')})"

    # ------------------------------------------------------------------ parameters
    def _sanitize_parameters(
        self,
        sampling_rate=None,
        lead_names=None,
        units=None,
        format=None,
        aggregation=None,
        quality=None,
        on_error=None,
        windowing=None,
        precision=None,
        **kwargs,
    ):
        preprocess = {}
        for key, value in (("sampling_rate", sampling_rate), ("lead_names", lead_names), ("units", units),
                           ("format", format), ("quality", quality), ("on_error", on_error), ("windowing", windowing)):
            if value is not None:
                preprocess[key] = value
        if on_error is not None and on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}.")
        postprocess = {}
        if aggregation is not None:
            if aggregation not in ("mean", "max"):
                raise ValueError(f"aggregation must be 'mean' or 'max', got {aggregation!r}.")
            postprocess["aggregation"] = aggregation
        forward, extra_post = self._sanitize_task_parameters(**kwargs)
        postprocess.update(extra_post)
        if precision is not None:
            from ..runtime.precision import normalize_precision

            if normalize_precision(precision) != "fp32" and getattr(self, "onnx_model", None) is not None:
                raise ValueError(f"precision={precision!r} applies to the PyTorch model; the ONNX Runtime backend "
                                 "(onnx_model) runs float32")
            forward["precision"] = precision
        return preprocess, forward, postprocess

    def _sanitize_task_parameters(self, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {', '.join(sorted(kwargs))}.")
        return {}, {}

    # ------------------------------------------------------------------ inputs
    def _prepare_input(self, inputs, sampling_rate=None, lead_names=None, units=None, format=None):
        """`(signal, extractor kwargs, record id, source)` for one input: files are read with
        `anyecg_hf.io.read_ecg` into an `ECGRecord`; arrays (numpy/torch, or a dict with `signal`) are passed to the
        feature extractor as they are, with their `sampling_rate` / `lead_names` / `units`."""
        ECGRecord, read_ecg = _reader()
        if ECGRecord is not None and isinstance(inputs, ECGRecord):
            rid = inputs.record_id if (inputs.source or "record_id" in inputs.metadata) else None
            return inputs, {}, rid, inputs.source
        if _is_pathlike(inputs):
            if read_ecg is None:
                raise ImportError(f"Reading the file {os.fspath(inputs)!r} needs the anyecg_hf package (this is a "
                                  "model folder's trust_remote_code copy of the pipeline, which takes arrays and "
                                  "dicts): pip install anyecg_hf")
            path = os.fspath(inputs)
            kwargs = {k: v for k, v in (("sampling_rate", sampling_rate), ("lead_names", lead_names), ("units", units)) if v is not None}
            record = read_ecg(path, format=format, **kwargs)
            return record, {}, record.record_id, record.source
        record_id = None
        if isinstance(inputs, dict):
            data = dict(inputs)
            signal = next((data[k] for k in ("signal", "array", "raw", "input_values") if k in data), None)
            if signal is None:
                raise ValueError(f"A dict input needs a 'signal' (leads, samples) entry; got keys {sorted(data)}.")
            sampling_rate = data.get("sampling_rate", sampling_rate)
            lead_names = data.get("lead_names", lead_names)
            units = data.get("units", units)
            record_id = data.get("record", data.get("record_id"))
            inputs = signal
        if isinstance(inputs, (list, tuple)) and inputs and not _is_pathlike(inputs[0]):
            inputs = np.asarray(inputs)
        if not (isinstance(inputs, (np.ndarray, torch.Tensor))):
            raise ValueError(
                f"Cannot use a {type(inputs).__name__} as an ECG: pass a file path, an ECGRecord, a (leads, samples) "
                "array with sampling_rate=..., or a dict {'signal': ..., 'sampling_rate': ...}."
            )
        if inputs.ndim == 3:
            raise ValueError(
                f"Got a {tuple(inputs.shape)} array: pass ONE ECG as a (leads, samples) array, or a list of them "
                "(pipe(list(batch)))."
            )
        kwargs = {"sampling_rate": sampling_rate, "lead_names": lead_names, "units": units,
                  "record_ids": [str(record_id) if record_id is not None else "array"]}
        return inputs, kwargs, record_id, None

    def _extractor(self, windowing: str | None):
        """The feature extractor, or a copy with another `windowing` (cached)."""
        cache = self.__dict__.setdefault("_extractor_variants", {})
        if windowing not in cache:
            cache[windowing] = self.feature_extractor.with_windowing(windowing)
        return cache[windowing]

    def _error_item(self, inputs, err: Exception) -> dict:
        cfg = self.model.config
        record = Path(os.fspath(inputs)).stem if _is_pathlike(inputs) else None
        if isinstance(inputs, dict):
            record = inputs.get("record", inputs.get("record_id"))
        return {
            "window": torch.zeros(1, dtype=torch.long),
            "input_values": torch.zeros(1, cfg.in_channels, cfg.num_samples),
            "lead_mask": torch.zeros(1, cfg.in_channels, dtype=torch.bool),
            "sample_mask": torch.zeros(1, cfg.num_samples, dtype=torch.bool),
            "is_last": True,
            "record": record,
            "source": os.fspath(inputs) if _is_pathlike(inputs) else None,
            "warnings": [],
            "error": f"{type(err).__name__}: {err}",
        }

    def preprocess(self, inputs, sampling_rate=None, lead_names=None, units=None, format=None, quality=True,
                   on_error="raise", windowing="sliding"):
        fe = self._extractor(windowing)
        try:
            signal, kwargs, record_id, source = self._prepare_input(
                inputs, sampling_rate=sampling_rate, lead_names=lead_names, units=units, format=format)
            kwargs = {k: v for k, v in kwargs.items() if v is not None}
            prepared = prepare_records([signal], fe, quality=quality, extractor_kwargs=kwargs)[0]
        except (ValueError, OSError, ImportError) as err:
            if on_error == "raise":
                raise
            yield self._error_item(inputs, err)
            return
        n = prepared.num_windows
        for i in range(n):
            item = {"window": torch.tensor([i])}
            for key in MODEL_INPUT_KEYS:
                if prepared.inputs.get(key) is not None:
                    item[key] = torch.from_numpy(prepared.inputs[key][i : i + 1])
            item.update(is_last=i == n - 1, record=record_id, source=source, warnings=prepared.warnings, error=None)
            yield item

    # ------------------------------------------------------------------ batching
    def get_inference_context(self):
        return torch.inference_mode

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        # ChunkPipeline's iterator with our collate (pads the sample axis of windows of different lengths and keeps
        # the per-record metadata as lists).
        if num_workers > 1:
            num_workers = 1  # a chunk iterator cannot be split across workers; one background reader still helps
        dataset = PipelineChunkIterator(inputs, self.preprocess, preprocess_params)
        collate = no_collate_fn if batch_size == 1 else self._collate
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=collate)
        model_iterator = PipelinePackIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def _collate(self, items):
        out = {}
        for key in dict.fromkeys(k for it in items for k in it):
            values = [it.get(key) for it in items]
            if any(v is None for v in values) and any(isinstance(v, torch.Tensor) for v in values):
                raise ValueError(f"cannot batch windows where only some have {key!r}")
            if isinstance(values[0], torch.Tensor):
                if len({v.shape for v in values}) == 1:
                    out[key] = torch.cat(values, dim=0)
                    continue
                length = max(v.shape[-1] for v in values)
                pad = float(getattr(self.feature_extractor, "padding_value", 0.0)) if key == "input_values" else 0
                padded = []
                for v in values:
                    if v.shape[-1] < length:
                        v = torch.nn.functional.pad(v, (0, length - v.shape[-1]), value=pad)
                    padded.append(v)
                out[key] = torch.cat(padded, dim=0)
            else:
                out[key] = values
        return out

    # ------------------------------------------------------------------ model
    def _forward(self, model_inputs, **forward_params):
        meta = {k: model_inputs.get(k) for k in _META_KEYS}
        window = model_inputs["window"]
        errors = meta["error"] if isinstance(meta["error"], list) else [meta["error"]]
        keep = torch.tensor([e is None for e in errors])
        inputs = {k: model_inputs[k] for k in MODEL_INPUT_KEYS if model_inputs.get(k) is not None}
        if not bool(keep.all()):
            inputs = {k: v[keep.to(v.device)] for k, v in inputs.items()}
        compute = resolve_precision(forward_params.pop("precision", None), self.device)
        if inputs["input_values"].shape[0]:
            dtype = self.model.dtype
            if inputs["input_values"].dtype != dtype and dtype.is_floating_point:
                inputs["input_values"] = inputs["input_values"].to(dtype)
            with autocast(compute, self.device):
                outputs = self._run_model(inputs, **forward_params)
        else:
            outputs = {}
        result = {"window": window}
        for name, template in self._empty_outputs(len(errors), **forward_params).items():
            got = outputs.get(name)
            if template is None or bool(keep.all()) or (got is None and bool(keep.any())):
                result[name] = got
                continue
            full = template.clone()  # NaN rows for the inputs that failed
            if got is not None:
                full = full.to(got.device)
                full[keep.to(got.device)] = got.to(full.dtype)
            result[name] = full
        result.update(meta)
        return result

    def _run_model(self, inputs, **forward_params) -> dict:
        """Model outputs for a batch of windows as a dict of `(batch, ...)` float tensors."""
        raise NotImplementedError

    def _empty_outputs(self, batch: int, **forward_params) -> dict:
        """NaN-filled outputs of the right shapes (for inputs that failed to read); `None` for absent outputs."""
        raise NotImplementedError

    # ------------------------------------------------------------------ postprocess helpers
    @staticmethod
    def _gather(model_outputs: list, key: str):
        values = [o.get(key) for o in model_outputs]
        if any(v is None for v in values):
            return None
        return torch.cat([v.float() for v in values], dim=0).cpu().numpy()

    @staticmethod
    def _aggregate(values, how: str):
        if values is None:
            return None
        return aggregate_windows(values, np.zeros(values.shape[0], dtype=np.int64), how=how, num_records=1)[0]

    @staticmethod
    def _meta(model_outputs: list) -> dict:
        first = model_outputs[0]
        return {"record": first.get("record"), "source": first.get("source"),
                "warnings": list(first.get("warnings") or []), "error": first.get("error"),
                "num_windows": len(model_outputs)}
