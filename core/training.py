"""The training loop of one ablation, in one process or as one rank of a DDP job.

`fit` trains, selects the best epoch on validation, hands the predictions to the
evaluation stage and writes the results contract (docs/results-contract.md) into the run
folder: config.json, history.csv, metrics.json, predictions_val.csv, predictions_test.csv,
best.pt, splits.csv, excluded.csv. Under torch.distributed (Ray Train, torchrun) every rank
trains and evaluates its shard; rank 0 alone writes. `python -m core.train` is its command.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from timm.data import Mixup
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from core import devices, io, results
from core.config import RunConfig
from core.cvae.synthetic import SyntheticImages, add_synthetic
from core.data.cache import DecodedImages, build_cache
from core.data.check import cached_check, usable_metadata
from core.data.dataset import load_dataset
from core.data.device_augment import EvalTransform, TrainAugment
from core.data.device_batches import DeviceBatches, device_loaders
from core.data.lesions import LesionDataset
from core.data.split import attach_split, lesion_split
from core.data.transforms import IMAGENET_MEAN, IMAGENET_STD, stored_side, train_transform
from core.evaluation import classification_metrics, evaluate_run, selection_key, validation_scores
from core.inference import EvalPipeline, embed, predict
from core.labels import CLASS_INDEX, CLASSES, NUM_CLASSES
from core.log import progress
from core.losses import build_loss, class_weights
from core.model import build_model
from core.ood import FeatureDistance, fit_feature_distance
from core.optim import build_optimizer, build_scheduler
from core.sampling import DistributedWeightedSampler

log = logging.getLogger(__name__)
EpochHook = Callable[[int, dict, dict], None]  # (epoch, history row, checkpoint state)


@dataclass
class Data:
    train: LesionDataset
    val: LesionDataset
    test: LesionDataset
    splits: pd.DataFrame  # image_id, lesion_id, dx, split
    excluded: pd.DataFrame  # image_id, reason: rows dropped by --skip-bad-images
    root: Path
    synthetic: bool
    fingerprint: str
    mean: tuple[float, float, float]  # the backbone's input normalisation
    std: tuple[float, float, float]
    test_info: pd.DataFrame | None = None  # the test images' metadata rows by image_id (intervals, subgroups)
    generated: SyntheticImages | None = None  # cVAE images appended to train (cfg.synthetic), else None

    def train_counts(self) -> list[int]:
        return np.bincount(self.train.labels, minlength=NUM_CLASSES).tolist()


def prepare_data(cfg: RunConfig, data_root: str | Path, mean, std) -> Data:
    """Check the dataset, split it lesion-wise and build the three datasets (train + cVAE images
    when cfg.synthetic asks for them)."""
    ds = load_dataset(data_root)
    report = cached_check(ds, cfg.cache_dir)
    meta = usable_metadata(ds, report, cfg.skip_bad_images)
    if cfg.splits_file:
        splits = attach_split(meta, pd.read_csv(cfg.splits_file, dtype=str))[["image_id", "lesion_id", "dx", "split"]]
    else:
        splits = lesion_split(meta, seed=cfg.split_seed, val_frac=cfg.val_fraction, test_frac=cfg.test_fraction,
                              duplicates=cfg.duplicates_file)
    evaluation = EvalPipeline.of(cfg, mean, std)  # val and test go through inference's one pipeline
    transforms = {"train": train_transform(cfg.image_size, cfg.random_resized_crop, mean, std, cfg.auto_augment),
                  "val": evaluation.transform, "test": evaluation.transform}
    parts = {}
    for split, transform in transforms.items():
        rows = splits[splits["split"] == split]
        ids = list(rows["image_id"])
        images = (build_cache(ds, ids, evaluation.side, cfg.cache_dir) if cfg.cache
                  else DecodedImages([ds.images[i] for i in ids], evaluation.side))
        parts[split] = LesionDataset(images, rows["dx"].map(CLASS_INDEX).to_numpy(), transform, ids)
    parts["train"], generated = add_synthetic(cfg, ds, splits, parts["train"], evaluation.side)
    # Reaching here with errors means --skip-bad-images dropped them: excluded() lists them.
    test_info = meta.set_index("image_id").loc[parts["test"].image_ids]
    return Data(**parts, splits=splits, excluded=report.excluded(), root=ds.root.resolve(), test_info=test_info,
                synthetic=ds.synthetic, fingerprint=ds.fingerprint(), mean=tuple(mean), std=tuple(std),
                generated=generated)


def build_image_caches(configs: list[RunConfig], data_root: str | Path, splits_file: str | Path) -> None:
    """Decode and resize once per image side the configs need, before any of them trains.

    prepare_data builds them, so the cache keys are the ones each run looks up. Real images
    only: baseline_synth's cVAE images are made by its own step.
    """
    by_side = {stored_side(c.image_size, c.random_resized_crop): c for c in configs if c.cache}
    for side, cfg in sorted(by_side.items()):
        log.info("image cache at %spx", side)
        prepare_data(dataclasses.replace(cfg, splits_file=str(splits_file), synthetic="none"), data_root,
                     IMAGENET_MEAN, IMAGENET_STD)


# --------------------------------------------------------------------------- loaders


def make_loaders(cfg: RunConfig, data: Data, device: torch.device) -> tuple:
    """Train, val and test batches: DataLoaders (augment on the CPU) or DeviceBatches, over the same samplers."""
    rank, world = devices.rank_and_world()
    if cfg.sampler:
        weights = class_weights(data.train_counts())
        train_sampler = DistributedWeightedSampler(data.train.labels, weights, world, rank, seed=cfg.seed)
    else:
        train_sampler = DistributedSampler(data.train, world, rank, shuffle=True, seed=cfg.seed)
    # A last batch of one image breaks BatchNorm in training mode.
    drop_last = len(data.train) // world > cfg.batch_size
    # Evaluation shards are padded to equal size; `predict` gathers and de-duplicates by index.
    samplers = {"train": train_sampler, **{name: DistributedSampler(getattr(data, name), world, rank, shuffle=False)
                                           for name in ("val", "test")}}
    if devices.augments_on_device(cfg.augment):
        evaluate = EvalTransform(cfg.image_size, data.mean, data.std)
        transforms = {"train": TrainAugment(cfg.image_size, cfg.random_resized_crop, data.mean, data.std,
                                            cfg.auto_augment),
                      "val": evaluate, "test": evaluate}
        parts = [(getattr(data, name), samplers[name], drop_last and name == "train", transforms[name])
                 for name in ("train", "val", "test")]
        return tuple(device_loaders(parts, cfg.batch_size, device))
    common = dict(batch_size=cfg.batch_size, num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                  persistent_workers=cfg.num_workers > 0)
    return (DataLoader(data.train, sampler=train_sampler, drop_last=drop_last, **common),
            *(DataLoader(getattr(data, name), sampler=samplers[name], **common) for name in ("val", "test")))


# --------------------------------------------------------------------------- one epoch


class WaitClock:
    """Wraps a loop's iterable and adds up the time the loop blocks waiting for the next item."""

    def __init__(self, iterable):
        self.iterable, self.seconds = iterable, 0.0

    def __iter__(self):
        items = iter(self.iterable)
        while True:
            start = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            self.seconds += time.perf_counter() - start
            yield item


def train_one_epoch(model, loader, criterion, optimizer, scheduler, scaler, device, amp_dtype, memory_format,
                    grad_clip, desc: str, mixup: Mixup | None = None,
                    after_step: Callable[[], None] | None = None) -> tuple[float, float, float]:
    """One pass over the training loader; returns (mean loss, images per second, data wait).

    The data wait is the share of the epoch's wall time spent blocked on the loader. (On
    the device path the augmentation runs on the GPU's queue instead: it shows as images/s
    below the ceiling of benchmarks/gpu_train.py, not as wait.) `mixup` turns each batch's
    labels into mixed target distributions; `after_step` runs after every optimizer step
    (the EMA update).
    """
    model.train()
    # The loss sum stays on the device: reading it every step would sync CUDA every step.
    total_loss, seen, start = torch.zeros((), device=device, dtype=torch.float64), 0, time.perf_counter()
    bar = progress(loader, desc=desc, unit="batch", disable=devices.rank_and_world()[0] != 0)
    clock = WaitClock(bar)
    for step, (images, labels, _) in enumerate(clock):
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        labels = targets = labels.to(device, non_blocking=True)
        if mixup is not None and len(labels) % 2 == 0:  # an odd last batch (no drop_last) trains unmixed
            images, targets = mixup(images, labels)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if after_step is not None:
            after_step()
        total_loss += loss.detach() * len(labels)
        seen += len(labels)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{total_loss.item() / seen:.3f}")
    stats = torch.tensor([total_loss.item(), seen, time.perf_counter() - start], dtype=torch.float64)
    if devices.rank_and_world()[1] > 1:
        totals = stats[:2].to(device)  # NCCL reduces device tensors only
        dist.all_reduce(totals)  # seconds stay rank-local: ranks run in parallel
        stats[:2] = totals.cpu()
    return float(stats[0] / stats[1]), float(stats[1] / stats[2]), clock.seconds / float(stats[2])


def training_images_unaugmented(cfg: RunConfig, data: Data, train_loader, device: torch.device):
    """The training images (every one, in order) through the evaluation transform."""
    rank, world = devices.rank_and_world()
    sampler = DistributedSampler(data.train, world, rank, shuffle=False)
    if isinstance(train_loader, DeviceBatches):  # the images are already held where the model runs
        return DeviceBatches(data.train, train_loader.store, sampler, cfg.batch_size, False,
                             EvalTransform(cfg.image_size, data.mean, data.std))
    dataset = EvalPipeline.of(cfg, data.mean, data.std).dataset(data.train.images, data.train.labels,
                                                                data.train.image_ids)
    return DataLoader(dataset, sampler=sampler, batch_size=cfg.batch_size, num_workers=cfg.num_workers)


# --------------------------------------------------------------------------- the run


def fit(cfg: RunConfig, data_root: str | Path, out_dir: str | Path, *, resume: dict | None = None,
        device: torch.device | None = None, on_epoch_end: EpochHook | None = None,
        track: Callable[[dict], None] | None = None) -> dict:
    """Train, select the best epoch, evaluate it on val and test, write the run folder.

    `resume` is a checkpoint state from an earlier epoch of this run. `on_epoch_end` is
    called on every rank after each epoch with the history row and the checkpoint state
    (Ray reports it); without it rank 0 saves the state as RUN_DIR/last.pt. `track` is
    called on rank 0 with each epoch's history row (the experiment trackers).
    """
    out = Path(out_dir)
    rank, world = devices.rank_and_world()
    device = device or devices.resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.backbone, cfg.pretrained, cfg.dropout)
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    data = prepare_data(cfg, data_root, mean, std)
    train_loader, val_loader, test_loader = make_loaders(cfg, data, device)

    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed input size: pick the fastest kernels once
    memory_format = devices.memory_format(cfg.channels_last)
    model.to(device, memory_format=memory_format)
    # `runner` trains and predicts; `model` is the plain module whose state dict is saved.
    runner = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
              if world > 1 else model)
    if cfg.compile:
        runner = torch.compile(runner)
    criterion = build_loss(cfg, data.train_counts()).to(device)
    mixup = (Mixup(mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha, label_smoothing=0.0,
                   num_classes=NUM_CLASSES) if cfg.mixes_images else None)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, steps_per_epoch=len(train_loader))
    amp_dtype = devices.amp_dtype(device, cfg.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    # With EMA the averaged weights are the ones validated, selected and saved.
    ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True) if cfg.ema_decay else None
    validated = ema.module if ema else runner  # `selected` holds its weights, without DDP or compile wrappers
    selected = ema.module if ema else model
    after_step = (lambda: ema.update(model, step=scheduler.last_epoch)) if ema else None

    state = {"epoch": 0, "history": [], "best": None}
    if resume:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        if ema:
            ema.module.load_state_dict(resume["ema"])
        state = {k: resume[k] for k in ("epoch", "history", "best")}

    if rank == 0:
        _write_run_inputs(out, cfg, data)
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        if _patience_exhausted(cfg, state):
            break
        # Seeding from (seed, epoch) makes a resumed run draw what an uninterrupted one would.
        epoch_seed = cfg.seed * 1_000_003 + epoch
        torch.manual_seed(epoch_seed)
        np.random.seed(epoch_seed % 2**32)  # timm's Mixup draws from numpy
        train_loader.sampler.set_epoch(epoch)
        start = time.perf_counter()
        train_loss, images_per_s, data_wait = train_one_epoch(
            runner, train_loader, criterion, optimizer, scheduler, scaler, device, amp_dtype, memory_format,
            cfg.grad_clip, f"epoch {epoch}/{cfg.epochs}", mixup, after_step)
        val_probs = predict(validated, val_loader, device, amp_dtype, memory_format)
        val = classification_metrics(data.val.labels, val_probs)
        row = {"epoch": epoch, "train_loss": train_loss, **validation_scores(val),
               "lr": scheduler.get_last_lr()[0], "train_images_per_s": images_per_s, "data_wait": data_wait,
               "seconds": time.perf_counter() - start}
        key = selection_key(val, cfg.select_on)
        if state["best"] is None or key > tuple(state["best"]["key"]):
            state["best"] = {"key": list(key), "epoch": epoch,
                             "model": {k: v.detach().cpu().clone() for k, v in selected.state_dict().items()}}
        state["epoch"] = epoch
        state["history"].append(row)
        checkpoint = {**state, "history": list(state["history"]), "model": model.state_dict(),
                      "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "scaler": scaler.state_dict(), "config": cfg.to_dict(),
                      **({"ema": ema.module.state_dict()} if ema else {})}
        if rank == 0:
            results.write_history(out, state["history"])
            if on_epoch_end is None:
                io.save_torch(out / results.RESUME, checkpoint)
            log.info(_epoch_line(row, cfg.select_on))
            if track is not None:
                track(row)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row, checkpoint)

    model.load_state_dict(state["best"]["model"])
    loaders = {"val": val_loader, "test": test_loader}
    probs = {name: predict(runner, loader, device, amp_dtype, memory_format) for name, loader in loaders.items()}
    tta_probs = ({name: predict(runner, loader, device, amp_dtype, memory_format, tta=True)
                  for name, loader in loaders.items()} if cfg.tta else None)
    features = {name: embed(model, loader, device, amp_dtype, memory_format) for name, loader in
                {"train": training_images_unaugmented(cfg, data, train_loader, device), **loaders}.items()}
    if rank != 0:
        return {}
    ood = fit_feature_distance(features["train"], data.train.labels, features["val"], features["test"])
    return _write_results(out, cfg, data, model, state, probs, tta_probs, world, ood)


def _patience_exhausted(cfg: RunConfig, state: dict) -> bool:
    return bool(cfg.patience and state["best"] and state["epoch"] - state["best"]["epoch"] >= cfg.patience)


def _epoch_line(row: dict, select_on: str) -> str:
    return (f"epoch {row['epoch']}: train_loss {row['train_loss']:.4f} val_loss {row['val_loss']:.4f} "
            f"val_acc {row['val_acc']:.4f} val_macro_f1 {row['val_macro_f1']:.4f} "
            f"val_mel_recall {row['val_mel_recall']:.4f} ({row['train_images_per_s']:.1f} img/s, "
            f"{row['data_wait']:.0%} waiting on data, {row['seconds']:.1f}s; selecting on {select_on})")


def _write_run_inputs(out: Path, cfg: RunConfig, data: Data) -> None:
    results.write_config(out, cfg.to_dict())
    results.write_splits(out, data.splits)
    io.write_csv(out / results.EXCLUDED, data.excluded)
    if data.generated:
        data.generated.write_run_files(out)


def _evaluate_and_write(out: Path, cfg: RunConfig, data: Data, probs: dict, suffix: str = "") -> dict:
    """The val and test predictions files (with `suffix`), and their metrics."""
    frames = {name: results.predictions_frame(getattr(data, name).image_ids, getattr(data, name).labels, p)
              for name, p in probs.items()}
    for name, frame in frames.items():
        results.write_predictions(out, name, frame, suffix)
    return evaluate_run(frames["val"], frames["test"], data.test_info, cfg.bootstrap_replicates, cfg.seed)


def _write_results(out: Path, cfg: RunConfig, data: Data, model: nn.Module, state: dict, probs: dict,
                   tta_probs: dict | None, world: int, ood: FeatureDistance) -> dict:
    metrics = _evaluate_and_write(out, cfg, data, probs)
    if tta_probs is not None:  # beside the plain figures, never instead of them
        metrics["tta"] = {"views": "8 dihedral (4 quarter turns, each also mirrored), probabilities averaged",
                          **_evaluate_and_write(out, cfg, data, tta_probs, suffix="_tta")}
    metrics.update({
        "selected_epoch": state["best"]["epoch"],
        "select_on": cfg.select_on,
        "epochs_run": state["epoch"],
        "synthetic_data": data.synthetic,
        "data_root": str(data.root),
        "data_fingerprint": data.fingerprint,
        "train_counts": dict(zip(CLASSES, data.train_counts(), strict=True)),
        "synthetic_counts": data.generated.counts if data.generated else dict.fromkeys(CLASSES, 0),
        "excluded_images": len(data.excluded),
        "world_size": world,
        "ood": ood.summary(),
    })
    results.write_ood(out, ood.arrays())
    results.write_metrics(out, metrics)
    best = {"model": model.state_dict(), "config": cfg.to_dict(), "classes": list(CLASSES),
            "mean": list(model.pretrained_cfg["mean"]), "std": list(model.pretrained_cfg["std"]),
            "epoch": state["best"]["epoch"], "synthetic_data": data.synthetic}
    io.save_torch(out / results.CHECKPOINT, best)
    (out / results.RESUME).unlink(missing_ok=True)
    return metrics
