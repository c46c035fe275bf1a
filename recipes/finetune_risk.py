"""Fine-tune an ECG foundation model to predict the future onset of conditions (survival: Cox or discrete time).

    accelerate launch recipes/finetune_risk.py --config recipes/configs/risk.yaml

The dataset needs `time_<condition>` / `event_<condition>` columns in its label table (years from the ECG to onset
or censoring); prevalent cases and unknown follow-up are masked (`at_risk_mask = 0`). The Cox head
(`model.config_overrides.risk_head_type: cox`, Efron ties) gets its Breslow baseline hazard fitted on the training
split after training, so the saved model gives absolute risks at `risk_horizons`; the discrete-time head gives them
directly. The best checkpoint by validation mean Harrell C is saved to `<output_dir>/final`.

This script reads top to bottom like `finetune_diagnosis.py` (arguments and config, the Accelerator, data and model,
optimiser, the training loop with exact resume, the final evaluation, saving and `push_to_hub`); the reusable parts
are in `anyecg_hf.training`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from anyecg_hf.runtime.precision import accelerate_mixed_precision
from anyecg_hf.modeling import AnyECGForRiskPrediction
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
    predictions_on_train,
    prepare_splits,
    push_to_hub,
    record_eval,
    resolve_resume,
    save_checkpoint,
    save_model,
)

logger = logging.getLogger("anyecg.recipes")

MODEL_CLASS = AnyECGForRiskPrediction
BEST_METRIC = "mean_harrell_c"  # picks the best checkpoint (training.best_metric overrides it)
TARGET_KEYS = ("event_times", "events", "at_risk_mask")  # dataset columns the collator batches


def config_updates(data, cfg) -> dict:
    """The risk head's conditions are the dataset's `time_` / `event_` columns."""
    if data.risk_label_space is None or "event_times" not in data.train.column_names:
        raise ValueError(f"{cfg['data']['dataset']} has no risk targets: its label table needs time_<condition> and "
                         "event_<condition> columns.")
    return {"risk_label_space": data.risk_label_space}


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
        accelerator.init_trackers("risk", config=flat_config(cfg))

    # ---- the training loop
    model.train()
    if t["strategy"] == "linear_probe":
        accelerator.unwrap_model(model).anyecg.eval()  # frozen backbone: no dropout, fixed batch-norm statistics
    bar = tqdm(total=max_steps, initial=state.step, desc="finetune risk",
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
    if getattr(unwrapped.config, "risk_head_type", "cox") == "cox" and getattr(unwrapped, "risk_head", None) is not None:
        # Cox head: Breslow baseline cumulative hazard from the training split (no augmentation), so the saved model
        # gives absolute risks
        preds = predictions_on_train(model, data, cfg, accelerator, TARGET_KEYS)
        unwrapped.fit_baseline_hazard(event_times=preds["event_times"], events=preds["events"],
                                      risk_scores=preds["risk_scores"], at_risk_mask=preds["at_risk_mask"])
    final_split = "test" if "test" in eval_dls else "eval"
    result = evaluate_split(model, eval_dls.get(final_split), splits[final_split], data, accelerator,
                            n_bootstrap=cfg["evaluation"]["n_bootstrap"], seed=cfg["evaluation"]["seed"])

    # ---- save (weights, feature extractor, label space, evaluation, model card) and push
    final = out / "final"
    weights = accelerator.get_state_dict(model)  # gathered from every process under FSDP
    if accelerator.is_main_process:
        save_model(unwrapped, fe, final, cfg, "risk", result, split=final_split, source=source, steps=state.step,
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
