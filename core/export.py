"""Take a trained run outside dermablate: timm's Hugging Face layout, ONNX, and a model card.

    python -m core.export --run RUN --out DIR [--onnx]

DIR holds what timm alone, or onnxruntime alone, needs (docs/export.md shows both):
- model.safetensors and config.json, written by timm's `save_for_hf`: the architecture,
  num_classes, label names, input size, mean and std, and the preprocessing (`crop_mode`
  "squash": the whole image resized square, as dermablate predicts). `timm.create_model(
  "local-dir:DIR", pretrained=True)` builds the model and loads the weights. Its "dermablate"
  entry holds the arm, the temperature fitted on validation and whether the data was synthetic;
- operating_points.json: the melanoma thresholds chosen on validation, on the softmax and on the
  temperature-scaled probability;
- model.onnx with --onnx: input "image" (N, 3, S, S), normalised; output "logits"; a dynamic batch
  axis. It is kept only once onnxruntime gives torch's probabilities for batches of 1 and 5;
- README.md: the model card (core/evaluation/model_card.py).

DIR is built beside itself and moved into place whole; an existing DIR is never overwritten. A
checkpoint that may not be trusted is refused, as everywhere (core/checkpoints.py).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from core import io
from core.log import add_verbosity_flags, setup_logging

log = logging.getLogger(__name__)

CONFIG = "config.json"  # beside model.safetensors, both written by timm's save_for_hf
POINTS = "operating_points.json"
ONNX = "model.onnx"
CARD = "README.md"
ONNX_TOLERANCE = 1e-4  # the largest difference in probability allowed between onnxruntime and torch
EXPORT_INSTALL = "pip install -e '.[export]' (onnx and onnxruntime)"


class ExportError(ValueError):
    """An export that cannot be made, or that does not reproduce the run's model."""


def export_run(run_dir: str | Path, out: str | Path, onnx: bool = False) -> Path:
    """Write the export of the finished run `run_dir` to the new folder `out`; returns `out`."""
    from timm.models import save_for_hf

    from core import results
    from core.evaluation.model_card import model_card, sweep_context
    from core.inference import load_run
    from core.labels import CLASSES

    run_dir, out = Path(run_dir), Path(out)
    if out.exists():
        raise ExportError(f"{out} exists: choose a new --out (an export is never written over another)")
    trained = load_run(run_dir)
    metrics = results.read_metrics(run_dir)
    if metrics is None:
        raise ExportError(f"{run_dir} has no {results.METRICS}: the run did not finish, so it has no figures to "
                          "export; finish it first (core.train --resume, or run_all.py --resume)")
    out.parent.mkdir(parents=True, exist_ok=True)
    building = io.new_temp(out, folder=True)
    try:
        size = trained.image_size
        save_for_hf(trained.model, str(building), safe_serialization=True,
                    model_config={"label_names": list(CLASSES)},
                    data_config={"input_size": (3, size, size), "mean": trained.mean, "std": trained.std,
                                 "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "squash"})
        config = json.loads((building / CONFIG).read_text())
        config["dermablate"] = {"arm": trained.config.name, "temperature": trained.temperature,
                                "synthetic_data": trained.synthetic_data,
                                "probabilities": "softmax(logits), or softmax(logits / temperature) calibrated",
                                "operating_points": POINTS}
        io.write_json(building / CONFIG, config)
        io.write_json(building / POINTS, operating_points(metrics))
        if onnx:
            export_onnx(trained.model, size, building / ONNX)
        io.write_text(building / CARD, model_card(run_dir, metrics, trained.config, sweep_context(run_dir)))
        os.rename(building, out)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return out


def operating_points(metrics: dict) -> dict:
    """The melanoma thresholds chosen on validation, with the validation figures they gave."""
    def chosen(points: list[dict]) -> list[dict]:
        return [{"target_recall": p["target_recall"], "threshold": p["threshold"], "val": p["val"]}
                for p in points if p["threshold"] is not None]

    calibrated = metrics.get("mel_operating_points_calibrated") or {}
    return {"class": "mel", "chosen_on": "validation",
            "rule": "flag melanoma when its probability is at least the threshold",
            "softmax": chosen(metrics["mel_operating_points"]["chosen_on_val"]),
            "temperature": calibrated.get("temperature"),
            "calibrated": chosen(calibrated.get("chosen_on_val", []))}


def export_onnx(model, size: int, path: Path) -> None:
    """model.onnx with a dynamic batch axis, kept only if onnxruntime gives torch's probabilities."""
    import numpy as np
    import torch
    from timm.utils.onnx import onnx_export

    try:
        import onnxruntime
    except ImportError:
        raise ExportError(f"--onnx needs onnx and onnxruntime, which are not installed: {EXPORT_INSTALL}") from None
    onnx_export(model, str(path), input_size=(3, size, size), batch_size=2, check=True,
                input_names=["image"], output_names=["logits"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    for batch in (1, 5):
        images = torch.randn(batch, 3, size, size, generator=generator)
        with torch.no_grad():
            expected = torch.softmax(model(images), dim=1).numpy()
        logits = session.run(["logits"], {"image": images.numpy()})[0]
        got = np.exp(logits - logits.max(1, keepdims=True))
        got /= got.sum(1, keepdims=True)
        worst = float(np.abs(got - expected).max())
        if worst > ONNX_TOLERANCE:
            raise ExportError(f"the ONNX model's probabilities differ from torch's by {worst:.2e} at batch size "
                              f"{batch} (allowed {ONNX_TOLERANCE:g}); it was not kept")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder (best.pt, metrics.json)")
    parser.add_argument("--out", type=Path, required=True, help="the new export folder")
    parser.add_argument("--onnx", action="store_true", help="also write model.onnx, checked with onnxruntime")
    args = add_verbosity_flags(parser).parse_args(argv)
    setup_logging(args)
    from core.checkpoints import UntrustedCheckpoint

    try:
        out = export_run(args.run, args.out, args.onnx)
    except (UntrustedCheckpoint, ExportError, FileNotFoundError, ValueError, io.DiskFull) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log.info("wrote %s: %s", out, ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
