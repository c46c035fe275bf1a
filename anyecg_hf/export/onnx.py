"""ONNX export of AnyECG models and an ONNX Runtime wrapper that behaves like the PyTorch model.

`export_onnx(model, "model.onnx")` writes ONE self-contained file (weights inside) whose input `input_values`
`(batch, leads, samples)` has a dynamic batch and, by default, a dynamic length. The model's config travels in the
file's metadata, so `OnnxECGModel("model.onnx")` knows the label space and lead order without the original folder,
and returns the same output class (`AnyECGDiagnosisOutput`, ...) as the PyTorch model, with torch tensors.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..runtime.threads import default_num_threads

METADATA_CONFIG = "anyecg_config"
METADATA_OUTPUTS = "anyecg_outputs"
METADATA_OUTPUT_CLASS = "anyecg_output_class"
METADATA_ARCHITECTURE = "anyecg_architecture"
METADATA_VERSION = "anyecg_hf_version"

DEFAULT_OPSET = 18
_EXCLUDED_OUTPUTS = ("loss", "hidden_states")


def min_export_samples(config) -> int:
    """Shortest input a dynamic-length export accepts: `stride ** (num_stages + 1) + 1` samples."""
    return int(config.stride) ** (len(config.m_blocks_list) + 1) + 1


class ONNXExportError(ValueError):
    """The model cannot be exported, or the exported file does not reproduce the PyTorch outputs."""


class _TupleOutputs(nn.Module):
    """Calls an AnyECG model and returns the named output tensors as a tuple (what the exporter traces)."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, input_values: torch.Tensor):
        out = self.model(input_values=input_values, return_dict=True)
        return tuple(out[name] for name in self.names)


def _output_names(output) -> list[str]:
    names = [k for k, v in output.items() if isinstance(v, torch.Tensor) and k not in _EXCLUDED_OUTPUTS]
    if not names:
        raise ONNXExportError(f"the model returned no tensor outputs to export ({type(output).__name__}).")
    return names


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    dynamic_length: bool = True,
    num_samples: int | None = None,
    opset_version: int = DEFAULT_OPSET,
    verify: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export an AnyECG model (backbone or any head) to a single ONNX file with a dynamic batch dimension.

    Outputs are the tensors of the model's output class other than `loss` and `hidden_states`, in its field order
    (e.g. `logits`, `pooler_output` for `AnyECGForDiagnosis`). The file's metadata holds the model config
    (`anyecg_config`, JSON), the output names and output class, so `OnnxECGModel` can rebuild both.

    Args:
        model: an `AnyECGPreTrainedModel` on CPU in float32 (it is put in eval mode).
        path: the `.onnx` file to write (parent folders are created).
        dynamic_length: also make the number of samples dynamic; otherwise it is fixed to `num_samples`. The
            dynamic length starts at `min_export_samples(config)` (257 for ECGFounder: the last stage keeps at
            least 2 time steps, which keeps the exported graph free of size-1 special cases).
        num_samples: length of the tracing example; default `model.config.num_samples` (5,000 at 500 Hz).
        opset_version: ONNX opset (default 18).
        verify: run the file with ONNX Runtime on a random batch (and a second length when dynamic) and compare
            with PyTorch; raise `ONNXExportError` when the max-abs difference exceeds `atol`.
        atol: tolerance of that check.

    Returns:
        The path written.
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "in_channels"):
        raise ONNXExportError(f"expected an AnyECG model with an AnyECGConfig, got {type(model).__name__}.")
    param = next(model.parameters(), None)
    if param is not None and (param.device.type != "cpu" or param.dtype != torch.float32):
        raise ONNXExportError(
            f"export a float32 CPU model (this one is {param.dtype} on {param.device}); call model.float().cpu() first."
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    num_samples = int(num_samples or config.num_samples)
    example = torch.randn(2, config.in_channels, num_samples, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(input_values=example, return_dict=True)
    names = _output_names(reference)
    wrapper = _TupleOutputs(model, names).eval()

    batch = torch.export.Dim("batch", min=1)
    dims = {0: batch}
    if dynamic_length:
        dims[2] = torch.export.Dim("samples", min=min_export_samples(config))
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                wrapper, (example,), dynamo=True, input_names=["input_values"], output_names=names,
                dynamic_shapes={"input_values": dims}, opset_version=opset_version, verbose=False,
            )
    except Exception as err:  # the exporter raises many types; report them as one
        raise ONNXExportError(f"torch.onnx.export failed for {type(model).__name__}: {err}") from err
    version = importlib.import_module("anyecg_hf.version").__version__
    metadata = {
        METADATA_CONFIG: config.to_json_string(use_diff=False),
        METADATA_OUTPUTS: json.dumps(names),
        METADATA_OUTPUT_CLASS: type(reference).__name__,
        METADATA_ARCHITECTURE: type(model).__name__,
        METADATA_VERSION: version,
    }
    program.model.metadata_props.update(metadata)
    program.model.doc_string = f"AnyECG {type(model).__name__} exported by anyecg_hf {version}"
    program.save(str(path), external_data=False)

    if verify:
        runner = OnnxECGModel(path)
        checks = [(example, reference)]
        if dynamic_length:
            other_length = max(num_samples // 2 + 1, min_export_samples(config))
            other = torch.randn(3, config.in_channels, other_length, generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                checks.append((other, model(input_values=other, return_dict=True)))
        for x, ref in checks:
            got = runner.run(x)
            for name in names:
                err = float(np.abs(got[name] - ref[name].numpy()).max())
                if not err <= atol:
                    raise ONNXExportError(
                        f"{path}: ONNX Runtime output {name!r} differs from PyTorch by {err:.2e} (> {atol:g}) for input "
                        f"shape {tuple(x.shape)}."
                    )
    return path


def _resolve_output_class(name: str | None):
    if not name:
        return None
    for module in ("anyecg_hf.modeling", "anyecg_hf.modeling.modeling_anyecg", "anyecg_hf.modeling.modeling_anyecg_risk"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if cls is not None:
            return cls
    return None


class OnnxECGModel:
    """Run an exported AnyECG model with ONNX Runtime on CPU, with the PyTorch model's calling convention.

    `model(input_values=x)` returns the model's output class (e.g. `AnyECGDiagnosisOutput`) holding torch
    tensors; `model.run(x)` returns a dict of NumPy arrays. Extra keyword inputs of the PyTorch models
    (`lead_mask`, `sample_mask`, ...) are accepted and ignored, as the PyTorch backbone ignores them too.

    Args:
        path: an `.onnx` file written by `export_onnx` (or `anyecg export-onnx`).
        num_threads: intra-op threads of the session; default as `configure_cpu_threads()` (one per available
            core, see `default_num_threads`). Inter-op threads are 1 (the graph is a chain).
        providers: ONNX Runtime execution providers; default `["CPUExecutionProvider"]`.
        session_options: an `onnxruntime.SessionOptions` to use as is (overrides `num_threads`).

    Attributes:
        config: the `AnyECGConfig` stored in the file (`None` for files exported by other tools).
        output_names: names of the outputs, in order.
    """

    main_input_name = "input_values"

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None, providers=None, session_options=None):
        try:
            import onnxruntime as ort
        except ImportError as err:  # pragma: no cover - optional dependency
            raise ImportError("OnnxECGModel needs onnxruntime: pip install -e '.[onnx]' in the anyecg_hf clone") from err
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file.")
        if session_options is None:
            session_options = ort.SessionOptions()
            session_options.intra_op_num_threads = int(num_threads or default_num_threads())
            session_options.inter_op_num_threads = 1
            session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(self.path), session_options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as err:
            raise ValueError(f"{self.path}: ONNX Runtime cannot load this file: {err}") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{self.path}: expected one input (input_values), found {[i.name for i in inputs]}.")
        self.input_name = inputs[0].name
        self.input_shape = inputs[0].shape
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.config = None
        if METADATA_CONFIG in meta:
            configuration = importlib.import_module("anyecg_hf.modeling.configuration_anyecg")
            self.config = configuration.AnyECGConfig.from_dict(json.loads(meta[METADATA_CONFIG]))
        self.architecture = meta.get(METADATA_ARCHITECTURE)
        self.min_samples = min_export_samples(self.config) if self.config is not None else None
        self.output_class = _resolve_output_class(meta.get(METADATA_OUTPUT_CLASS))

    # PyTorch-model look-alikes used by pipelines
    device = torch.device("cpu")
    dtype = torch.float32

    def eval(self):
        return self

    def _as_numpy(self, input_values) -> np.ndarray:
        if isinstance(input_values, torch.Tensor):
            input_values = input_values.detach().cpu()
            if input_values.is_floating_point():
                input_values = input_values.float()
            input_values = input_values.numpy()
        x = np.ascontiguousarray(np.asarray(input_values))
        if x.ndim != 3:
            raise ValueError(f"{self.path}: input_values must be (batch, leads, samples); got shape {x.shape}.")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{self.path}: input_values must be floating point, got {x.dtype}.")
        leads = self.input_shape[1]
        if isinstance(leads, int) and x.shape[1] != leads:
            raise ValueError(f"{self.path}: input_values has {x.shape[1]} leads but the model expects {leads}.")
        length = self.input_shape[2]
        if self.min_samples is not None and x.shape[2] < self.min_samples:
            raise ValueError(f"{self.path}: inputs need at least {self.min_samples} samples, got {x.shape[2]}.")
        if isinstance(length, int) and x.shape[2] != length:
            raise ValueError(
                f"{self.path}: this file was exported for {length} samples, got {x.shape[2]} "
                "(re-export with a dynamic length)."
            )
        return x.astype(np.float32, copy=False)

    def run(self, input_values) -> dict[str, np.ndarray]:
        """Run the session on a `(batch, leads, samples)` array or tensor; returns `{output name: array}`."""
        outputs = self.session.run(self.output_names, {self.input_name: self._as_numpy(input_values)})
        return dict(zip(self.output_names, outputs))

    def __call__(self, input_values=None, return_dict: bool = True, **kwargs):
        if input_values is None:
            raise ValueError("OnnxECGModel needs input_values.")
        outputs = {k: torch.from_numpy(v) for k, v in self.run(input_values).items()}
        if not return_dict:
            return tuple(outputs.values())
        if self.output_class is not None:
            return self.output_class(**outputs)
        return outputs

    forward = __call__

    def __repr__(self) -> str:
        return f"OnnxECGModel({str(self.path)!r}, architecture={self.architecture!r}, outputs={self.output_names})"


__all__ = ["ONNXExportError", "OnnxECGModel", "export_onnx"]
