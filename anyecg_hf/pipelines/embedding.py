"""`pipeline("ecg-embedding")`: one embedding vector per ECG (the backbone's pooled output)."""

from __future__ import annotations

import torch

from .base import ECGPipelineBase


class ECGEmbeddingPipeline(ECGPipelineBase):
    """ECG embeddings: the mean-pooled last feature map of the backbone (`pooler_output`, `config.hidden_size`
    values, 1,024 for ECGFounder), averaged over the windows of a long record. Works with every AnyECG model: heads
    are not run.

    ```python
    pipe = pipeline("ecg-embedding", model="path/or/hub-id")
    out = pipe("HR06000.hea")           # {"record": "HR06000", "embedding": np.ndarray (1024,), "warnings": [...]}
    pipe(paths, batch_size=64)          # list of such dicts
    ```

    The built-in `feature-extraction` task is text-only in transformers and is left alone.

    Call arguments (besides those of `ECGPipelineBase`):
        return_tensors (`bool`, defaults to `False`): the embedding as a `torch.Tensor` instead of a float32
            `np.ndarray`.
    An input that failed with `on_error="return"` gives `{"record", "embedding": None, "error": message}`.
    """

    def _sanitize_task_parameters(self, return_tensors=None, **kwargs):
        if kwargs:
            raise TypeError(f"ecg-embedding got unexpected arguments: {', '.join(sorted(kwargs))}.")
        return {}, ({} if return_tensors is None else {"return_tensors": bool(return_tensors)})

    def _run_model(self, inputs):
        if self.onnx_model is not None:
            return {"embedding": self._call_model(inputs).pooler_output.float()}
        backbone = self.model.base_model
        return {"embedding": backbone(**inputs, return_dict=True).pooler_output.float()}

    def _empty_outputs(self, batch):
        return {"embedding": torch.full((batch, self.model.config.hidden_size), float("nan"))}

    def postprocess(self, model_outputs, aggregation="mean", return_tensors=False):
        meta = self._meta(model_outputs)
        result = {"record": meta["record"]}
        if meta["error"]:
            result.update(embedding=None, warnings=meta["warnings"], error=meta["error"])
        else:
            emb = self._aggregate(self._gather(model_outputs, "embedding"), aggregation).astype("float32")
            result.update(embedding=torch.from_numpy(emb) if return_tensors else emb, warnings=meta["warnings"])
        if meta["source"] is not None:
            result["source"] = meta["source"]
        return result
