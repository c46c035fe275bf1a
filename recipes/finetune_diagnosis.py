"""Fine-tune an ECG foundation model for multi-label diagnosis (masked BCE over the dataset's label space).

    accelerate launch recipes/finetune_diagnosis.py --config recipes/configs/diagnosis.yaml
    python recipes/finetune_diagnosis.py --config recipes/configs/diagnosis.yaml --set training.max_steps=100

The dataset (built with `anyecg build-dataset`) decides the conditions; the backbone comes from ECGFounder, a saved
AnyECG model or a fresh config (`model.init`). Unknown labels (`label_mask = 0`) are left out of the loss; class
weighting sets the BCE `pos_weight`. The best checkpoint by validation macro AUROC is evaluated on the test split and
saved to `<output_dir>/final` with its feature extractor, label space and model card. See `recipes/README.md`.
"""

from __future__ import annotations

import numpy as np

from common import Task, main, positive_weights

from anyecg_hf.modeling import AnyECGForDiagnosis


def config_updates(data, cfg) -> dict:
    """The model's outputs are the dataset's conditions; class weights come from the training labels."""
    if data.label_space is None or "labels" not in data.train.column_names:
        raise ValueError(f"{cfg['data']['dataset']} has no diagnosis labels: build it with a label table of condition codes.")
    t = cfg["training"]
    labels = np.asarray(data.train.with_format("numpy")["labels"], dtype=np.float32)
    mask = np.asarray(data.train.with_format("numpy")["label_mask"], dtype=bool)
    return {"label_space": data.label_space,
            "diagnosis_pos_weight": positive_weights(labels, mask, t["class_weighting"], t["max_pos_weight"])}


TASK = Task(
    name="diagnosis",
    model_class=AnyECGForDiagnosis,
    best_metric="macro_auroc",
    config_updates=config_updates,
    target_keys=("labels", "label_mask"),
)

if __name__ == "__main__":
    main(TASK, __doc__.splitlines()[0])
