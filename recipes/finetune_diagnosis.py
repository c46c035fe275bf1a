"""Fine-tune an ECG foundation model for multi-label diagnosis (masked BCE over the dataset's label space).

    accelerate launch recipes/finetune_diagnosis.py --config recipes/configs/diagnosis.yaml
    python recipes/finetune_diagnosis.py --config recipes/configs/diagnosis.yaml --set training.max_steps=100

The dataset (built with `anyecg build-dataset`) decides the conditions; the backbone comes from ECGFounder, a saved
AnyECG model or a fresh config (`model.init`). Unknown labels (`label_mask = 0`) are left out of the loss; class
weighting sets the BCE `pos_weight`. The best checkpoint by validation macro AUROC is evaluated on the test split and
saved to `<output_dir>/final` with its feature extractor, label space and model card. See `recipes/README.md`.

This script reads top to bottom: arguments and config, the Accelerator, data and model, optimiser, the training loop
(with exact resume from a checkpoint), the final evaluation, saving and `push_to_hub`. The reusable parts (config
schema, layer-wise learning-rate decay, head-row transfer, class weights, checkpoint state, model card) are in
`anyecg_hf.training`. The same script runs on one CPU, one GPU, several GPUs (DDP), nodes or FSDP, chosen with
`accelerate launch --config_file recipes/configs/accelerate_*.yaml`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from anyecg_hf.runtime.precision import accelerate_mixed_precision
from anyecg_hf.modeling import AnyECGForDiagnosis
from anyecg_hf.training import (
    TrainState,
    evaluate_split,
    feature_extractor_for,
    flat_config,
    init_model,
    load_config,
    load_data,
    make_dataloaders,
    parameter_groups,
    parse_args,
    positive_weights,
    prepare_splits,
    push_to_hub,
    record_eval,
    resolve_resume,
    save_checkpoint,
    save_model,
)

logger = logging.getLogger("anyecg.recipes")

MODEL_CLASS = AnyECGForDiagnosis
BEST_METRIC = "macro_auroc"  # picks the best checkpoint (training.best_metric overrides it)
TARGET_KEYS = ("labels", "label_mask")  # dataset columns the collator batches


def config_updates(data, cfg) -> dict:
    """The model's outputs are the dataset's conditions; class weights come from the training labels."""
    if data.label_space is None or "labels" not in data.train.column_names:
        raise ValueError(f"{cfg['data']['dataset']} has no diagnosis labels: build it with a label table of condition codes.")
    t = cfg["training"]
    labels = np.asarray(data.train.with_format("numpy")["labels"], dtype=np.float32)
    mask = np.asarray(data.train.with_format("numpy")["label_mask"], dtype=bool)
    return {"label_space": data.label_space,
            "diagnosis_pos_weight": positive_weights(labels, mask, t["class_weighting"], t["max_pos_weight"])}


def run(cfg: dict) -> dict:
    """Train, evaluate, save (and push). Returns a summary dict (also written to `output_dir/trainer_state.json`)."""
    t = cfg["training"]
    out = Path(t["output_dir"])
    log_with = None if t["log_with"] in (None, "none") else t["log_with"]
    accelerator = Accelerator(
        mixed_precision=accelerate_mixed_precision(t["mixed_precision"]),  # "auto": bf16 where native
        gradient_accumulation_steps=t["gradient_accumulation_steps"],
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        dataloader_config=DataLoaderConfiguration(split_batches=True),  # training.batch_size is the global batch
    )
    set_seed(t["seed"])
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    best_metric = t["best_metric"] or BEST_METRIC

    # ---- data and model: the dataset decides the conditions; every split is preprocessed once (cached)
    data = load_data(cfg)
    model, source = init_model(MODEL_CLASS, cfg, config_updates(data, cfg))
    fe = feature_extractor_for(model, cfg)
    data = prepare_splits(data, fe, cfg, accelerator)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "run_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    train_dl, eval_dls, train_collator = make_dataloaders(data, model.config, cfg, TARGET_KEYS)

    # ---- optimiser and schedule (full / linear probe / layer-wise learning-rate decay)
    groups = parameter_groups(model, t["strategy"], t["learning_rate"], t["weight_decay"], t["layer_decay"],
                              t["head_learning_rate"])
    optimizer = torch.optim.AdamW(groups, lr=t["learning_rate"], betas=tuple(t["adam_betas"]))
    steps_per_epoch = max(1, math.ceil(len(train_dl) / t["gradient_accumulation_steps"]))
    max_steps = t["max_steps"] if t["max_steps"] and t["max_steps"] > 0 else t["num_epochs"] * steps_per_epoch
    warmup = t["warmup_steps"] if t["warmup_steps"] is not None else int(round(t["warmup_ratio"] * max_steps))
    scheduler = get_scheduler(t["lr_scheduler"], optimizer, num_warmup_steps=warmup, num_training_steps=max_steps)
    model, optimizer, train_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, scheduler)
    eval_dls = {k: accelerator.prepare(v) for k, v in eval_dls.items()}
    splits = {"eval": data.eval, "test": data.test}

    # ---- resume: model, optimizer, scheduler, RNG states and the counters in `state`
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    resume = resolve_resume(t["resume_from_checkpoint"], out)
    if resume is not None:
        accelerator.load_state(str(resume))
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", resume, state.step, state.epoch, state.batches_in_epoch)
    if log_with:
        accelerator.init_trackers("diagnosis", config=flat_config(cfg))

    # ---- the training loop
    model.train()
    if t["strategy"] == "linear_probe":
        accelerator.unwrap_model(model).anyecg.eval()  # frozen backbone: no dropout, fixed batch-norm statistics
    bar = tqdm(total=max_steps, initial=state.step, desc="finetune diagnosis",
               disable=not (t["progress_bar"] and accelerator.is_local_main_process))
    running, n_running, local_batch, stopped = 0.0, 0, 0, False
    while state.step < max_steps and not stopped:
        train_dl.set_epoch(state.epoch)
        train_collator.set_epoch(state.epoch)  # augmentations and random crops are seeded per epoch
        loader = accelerator.skip_first_batches(train_dl, state.batches_in_epoch) if state.batches_in_epoch else train_dl
        for batch in loader:
            local_batch = local_batch or int(batch["input_values"].shape[0])
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and t["max_grad_norm"]:
                    accelerator.clip_grad_norm_(model.parameters(), t["max_grad_norm"])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state.batches_in_epoch += 1
            running += float(accelerator.reduce(loss.detach().float(), reduction="mean"))
            n_running += 1
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            bar.update(1)
            if state.step % t["log_every"] == 0 or state.step == max_steps:
                entry = {"step": state.step, "loss": running / n_running, "lr": scheduler.get_last_lr()[0]}
                state.history.append(entry)
                accelerator.log({"train/loss": entry["loss"], "train/lr": entry["lr"]}, step=state.step)
                bar.set_postfix(loss=f"{entry['loss']:.4f}")
                running, n_running = 0.0, 0
            if t["eval_every"] and state.step % t["eval_every"] == 0:
                result = evaluate_split(model, eval_dls.get("eval"), data.eval, data, accelerator)
                record_eval(result, state, best_metric, accelerator, model, fe, out)
            if t["save_every"] and state.step % t["save_every"] == 0:
                save_checkpoint(accelerator, out, state.step, t["keep_checkpoints"])
            if t["stop_after_steps"] and state.step >= t["stop_after_steps"]:
                if not (t["save_every"] and state.step % t["save_every"] == 0):
                    save_checkpoint(accelerator, out, state.step, t["keep_checkpoints"])
                stopped = True
                break
            if state.step >= max_steps:
                break
        else:
            state.epoch += 1
            state.batches_in_epoch = 0
    bar.close()
    if stopped:
        accelerator.end_training()
        logger.info("stopped after step %d (stop_after_steps); resume with training.resume_from_checkpoint=latest", state.step)
        return {"status": "stopped", "step": state.step, "output_dir": str(out)}

    # ---- the final model: the best checkpoint by `best_metric` (or the last), evaluated on the test split
    if t["eval_every"] and (not state.evals or state.evals[-1]["step"] != state.step):
        result = evaluate_split(model, eval_dls.get("eval"), data.eval, data, accelerator)
        record_eval(result, state, best_metric, accelerator, model, fe, out)
    unwrapped = accelerator.unwrap_model(model)
    if t["final_model"] == "best" and state.best_step is not None and (out / "best" / "model.safetensors").exists():
        from safetensors.torch import load_file

        unwrapped.load_state_dict(load_file(str(out / "best" / "model.safetensors")), strict=False)
    final_split = "test" if "test" in eval_dls else "eval"
    result = evaluate_split(model, eval_dls.get(final_split), splits[final_split], data, accelerator,
                            n_bootstrap=cfg["evaluation"]["n_bootstrap"], seed=cfg["evaluation"]["seed"])

    # ---- save (weights, feature extractor, label space, evaluation, model card) and push
    final = out / "final"
    weights = accelerator.get_state_dict(model)  # gathered from every process under FSDP
    if accelerator.is_main_process:
        save_model(unwrapped, fe, final, cfg, "diagnosis", result, split=final_split, source=source, steps=state.step,
                   weights=weights)
    accelerator.wait_for_everyone()
    summary = {
        "status": "done", "step": state.step, "num_processes": accelerator.num_processes, "local_batch_size": local_batch,
        "output_dir": str(out), "final_model": str(final),
        "best_metric": best_metric, "best_value": state.best_metric, "best_step": state.best_step,
        "final_split": final_split, "final_metrics": {} if result is None else result.metrics,
        "history": state.history, "evals": state.evals,
    }
    if accelerator.is_main_process:
        (out / "trainer_state.json").write_text(json.dumps(summary, indent=1, default=float))
        if cfg["hub"]["push_to_hub"]:
            push_to_hub(final, cfg["hub"])
    accelerator.end_training()
    return summary


def main(argv=None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)
    summary = run(load_config(args.config, args.overrides))
    logger.info("finished: %s", {k: v for k, v in summary.items() if k not in ("history", "evals")})
    return summary


if __name__ == "__main__":
    main()
