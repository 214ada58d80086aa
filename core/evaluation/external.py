"""External test set: a trained run scored on the ISIC 2018 Task 3 test images (1511 images).

    python -m core.evaluation.external --external DIR (--run RUN_DIR [RUN_DIR ...] | --sweep SWEEP_DIR)
                                       [--labels FILE] [--tta] [--batch-size N]

DIR holds ISIC2018_Task3_Test_GroundTruth.csv (HAM10000 metadata or the challenge's
one-hot format) and the images, unpacked or as ISIC2018_Task3_Test_Images.zip (what
`python -m core.data download` fetches). Exit status 2 on bad input, 1 when a run failed.

The ISIC 2018 challenge's Task 3 test set was held out from HAM10000 (the challenge's
training set) and comes mostly from the same sources (the Dataverse record says so): it
tests a run on images its split never saw, not on another population. Its ground truth
comes in two formats, both read here:

- HAM10000 metadata (the Harvard Dataverse copy): lesion_id, image_id, dx, dx_type, age,
  sex, localization, dataset; comma- or tab-separated.
- the challenge's one-hot table: image, MEL, NV, BCC, AKIEC, BKL, DF, VASC with 1.0 / 0.0.
  It has no lesion_id: each image then counts as its own lesion for the bootstrap.

The images are found by image_id anywhere under a folder (unpacked, or read in place from
ISIC2018_Task3_Test_Images.zip) and go through exactly the pipeline of internal test
evaluation. `evaluate_external` writes predictions_external.csv and metrics_external.json
into the run folder; the challenge's metric, balanced multiclass accuracy (the mean of the
per-class recalls), sits beside the run's internal test figures.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from core import devices, results
from core.config import from_dict
from core.data.cache import DecodedImages
from core.data.images import ImageRef, index_images
from core.data.lesions import LesionDataset
from core.data.metadata import REQUIRED_COLUMNS, DatasetError, header_columns, is_synthetic, read_metadata
from core.data.transforms import eval_transform, stored_side
from core.evaluation.bootstrap import confidence_intervals, interval_text
from core.evaluation.metrics import at_threshold, classification_metrics, interval_thresholds
from core.evaluation.subgroups import subgroup_columns, subgroup_report
from core.labels import CLASS_INDEX, CLASSES, MEL
from core.log import add_verbosity_flags, setup_logging
from core.predict import TrainedModel, load_run
from core.train import predict

GROUND_TRUTH_NAMES = ("ISIC2018_Task3_Test_GroundTruth.csv", "ISIC2018_Task3_Test_GroundTruth.tab")
HAM_FORMAT = "ham10000_metadata"
ONE_HOT_FORMAT = "isic2018_one_hot"
ONE_HOT_IMAGE = "image"
ONE_HOT_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")  # the challenge's column order
BALANCED_MULTICLASS_ACCURACY = (
    "the ISIC 2018 Task 3 challenge metric: the mean of the per-class recalls "
    "(= balanced_accuracy, over the classes present in the ground truth; all seven in ISIC 2018)"
)
DOWNLOAD_HINT = "python -m core.data download --dest DIR fetches the ISIC 2018 Task 3 test set"
SHOWN = 5  # offending rows named in one error message


@dataclass
class GroundTruth:
    path: Path
    format: str  # HAM_FORMAT or ONE_HOT_FORMAT
    frame: pd.DataFrame  # image_id, lesion_id, dx (+ the metadata columns of the HAM format), file order
    own_lesion_images: int  # rows without a lesion_id in the file: each counts as its own lesion

    @property
    def synthetic(self) -> bool:
        return is_synthetic(self.frame)

    def lesion_note(self) -> str:
        if self.own_lesion_images == len(self.frame):
            return (f"{self.path.name} has no lesion_id: each image counts as its own lesion in the bootstrap, "
                    "so the intervals are too narrow if a lesion has several images")
        if self.own_lesion_images:
            return f"{self.own_lesion_images} image(s) without lesion_id count as their own lesion in the bootstrap"
        return "lesion-level bootstrap over the lesion_id column"


@dataclass
class ExternalSet:
    ground_truth: GroundTruth
    root: Path  # where the images were found
    images: list[ImageRef]  # in ground-truth order

    @property
    def labels(self) -> np.ndarray:
        return self.ground_truth.frame["dx"].map(CLASS_INDEX).to_numpy()

    @property
    def image_ids(self) -> list[str]:
        return list(self.ground_truth.frame["image_id"])


# --------------------------------------------------------------------------- ground truth


def find_ground_truth(root: str | Path) -> Path:
    """The ISIC2018_Task3_Test_GroundTruth.csv (or .tab) under `root`; the .csv wins beside a .tab."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"external test folder {root} is not a directory: pass the folder that holds the "
                           f"ISIC 2018 Task 3 test set ({DOWNLOAD_HINT})")
    found = sorted(p for name in GROUND_TRUTH_NAMES for p in root.rglob(name) if p.is_file())
    folders = {p.parent for p in found}
    if not found:
        raise DatasetError(f"no {' or '.join(GROUND_TRUTH_NAMES)} under {root}: {DOWNLOAD_HINT}, "
                           "or pass --labels FILE for a ground-truth table with another name")
    if len(folders) > 1:
        listed = ", ".join(str(p) for p in found[:SHOWN])
        raise DatasetError(f"several ISIC 2018 Task 3 ground-truth tables under {root} ({listed}); "
                           "choose one with --labels FILE")
    return found[0]  # .csv sorts before .tab


def read_ground_truth(path: str | Path) -> GroundTruth:
    """Read either ground-truth format; raises DatasetError naming the file, the lines and the fix."""
    path = Path(path)
    columns, delimiter = _header(path)
    if all(c in columns for c in REQUIRED_COLUMNS):
        truth = _read_ham(path)
    elif ONE_HOT_IMAGE in columns and all(c in {x.upper() for x in columns} for c in ONE_HOT_CLASSES):
        truth = _read_one_hot(path, delimiter)
    else:
        raise DatasetError(
            f"{path} is in neither ground-truth format (found columns: {', '.join(columns[:12])}); expected the "
            f"HAM10000 metadata columns ({', '.join(REQUIRED_COLUMNS)}, ...) or the ISIC 2018 one-hot columns "
            f"({ONE_HOT_IMAGE}, {', '.join(ONE_HOT_CLASSES)})"
        )
    _check_rows(truth)
    return truth


def _header(path: Path) -> tuple[list[str], str]:
    """The column names of a comma- or tab-separated table, and its delimiter."""
    if not path.is_file():
        raise DatasetError(f"ground-truth file {path} does not exist")
    try:
        with path.open(encoding="utf-8-sig") as f:
            header = f.readline()
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not a text table; pass the ISIC2018_Task3_Test_GroundTruth.csv file") from None
    return header_columns(header.strip())


def _read_ham(path: Path) -> GroundTruth:
    frame = read_metadata(path)
    blank = frame["lesion_id"] == ""
    frame.loc[blank, "lesion_id"] = frame.loc[blank, "image_id"]
    return GroundTruth(path, HAM_FORMAT, frame, int(blank.sum()))


def _read_one_hot(path: Path, delimiter: str) -> GroundTruth:
    """image, MEL .. VASC -> image_id, lesion_id (= image_id), dx; exactly one 1 per row."""
    try:
        table = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, ValueError) as e:
        raise DatasetError(f"{path} could not be parsed as a table: {e}") from None
    table.columns = table.columns.str.strip()
    by_upper = {c.upper(): c for c in table.columns if c != ONE_HOT_IMAGE}
    class_columns = [by_upper[c] for c in ONE_HOT_CLASSES]
    values = table[class_columns].apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce"))
    valid = values.isin([0.0, 1.0]).all(axis=1) & (values.sum(axis=1) == 1)
    if not valid.all():
        rows = [f"line {i + 2} ({table[ONE_HOT_IMAGE].iloc[i]}: "
                f"{', '.join(f'{c}={table[by_upper[c]].iloc[i]}' for c in ONE_HOT_CLASSES)})"
                for i in np.flatnonzero(~valid)[:SHOWN]]
        raise DatasetError(
            f"{path}: {int((~valid).sum())} row(s) are not one-hot, each needs exactly one 1 (the diagnosis) and "
            f"0 in the other class columns: {'; '.join(rows)}; fix those rows"
        )
    image_ids = table[ONE_HOT_IMAGE].str.strip()
    dx = [ONE_HOT_CLASSES[i].lower() for i in values.to_numpy().argmax(axis=1)]
    frame = pd.DataFrame({"image_id": image_ids, "lesion_id": image_ids, "dx": dx})
    return GroundTruth(path, ONE_HOT_FORMAT, frame, len(frame))


def _check_rows(truth: GroundTruth) -> None:
    """Blank or duplicate image_ids and unknown dx, each named by line."""
    frame, path = truth.frame, truth.path
    if frame.empty:
        raise DatasetError(f"{path} has a header but no rows")
    problems = {
        "blank image_id": frame["image_id"] == "",
        "duplicate image_id": frame["image_id"].duplicated(keep=False) & (frame["image_id"] != ""),
        f"unknown dx (expected one of {', '.join(CLASSES)})": ~frame["dx"].isin(CLASSES),
    }
    for what, bad in problems.items():
        if bad.any():
            rows = [f"line {i + 2} ({frame['image_id'].iloc[i]!r}, dx {frame['dx'].iloc[i]!r})"
                    for i in np.flatnonzero(bad)[:SHOWN]]
            raise DatasetError(f"{path}: {int(bad.sum())} row(s) with {what}: {'; '.join(rows)}; fix those rows")


# --------------------------------------------------------------------------- images


def locate_images(truth: GroundTruth, root: str | Path) -> list[ImageRef]:
    """Each ground-truth image under `root` (files or zip members), in ground-truth order."""
    root = Path(root)
    found = index_images(root)
    missing = [i for i in truth.frame["image_id"] if i not in found]
    if missing:
        raise DatasetError(
            f"{len(missing)} of the {len(truth.frame)} images {truth.path.name} lists are not under {root} "
            f"(e.g. {', '.join(missing[:SHOWN])}): unpack ISIC2018_Task3_Test_Images.zip there or leave the zip "
            f"in it ({DOWNLOAD_HINT}), or point --external at the folder that holds the images"
        )
    return [found[i] for i in truth.frame["image_id"]]


def load_external(root: str | Path, labels: str | Path | None = None) -> ExternalSet:
    """The ground truth (found under `root`, or `labels`) and the location of each of its images."""
    truth = read_ground_truth(labels if labels else find_ground_truth(root))
    return ExternalSet(truth, Path(root), locate_images(truth, root))


# --------------------------------------------------------------------------- prediction


def external_loader(trained: TrainedModel, external: ExternalSet, batch_size: int) -> DataLoader:
    """The external images as core.train.prepare_data builds the test set: square resize, eval transform."""
    cfg = trained.config
    side = stored_side(cfg["image_size"], cfg["random_resized_crop"])
    dataset = LesionDataset(DecodedImages(external.images, side), external.labels,
                            eval_transform(cfg["image_size"], trained.mean, trained.std), external.image_ids)
    return DataLoader(dataset, batch_size=batch_size, num_workers=cfg["num_workers"])


def predict_external(trained: TrainedModel, external: ExternalSet, batch_size: int = 64,
                     tta: bool = False) -> np.ndarray:
    """Softmax probabilities (N, 7) in ground-truth order, on the run's device and precision."""
    cfg = from_dict(trained.config, source="the run's config")
    device = devices.resolve_device(cfg.device)
    memory_format = devices.memory_format(cfg.channels_last)
    model = trained.model.to(device, memory_format=memory_format)
    return predict(model, external_loader(trained, external, batch_size), device, devices.amp_dtype(device, cfg.amp),
                   memory_format, tta=tta)


# --------------------------------------------------------------------------- figures


def external_figures(external: ExternalSet, probs: np.ndarray, trained: TrainedModel) -> dict:
    """Metrics, the challenge metric with its interval, intervals, the validation-chosen melanoma
    operating points and (for a ground truth with metadata columns) subgroups, all on the external set."""
    frame = external.ground_truth.frame
    y, lesions = external.labels, frame["lesion_id"].to_numpy()
    replicates, seed = trained.config["bootstrap_replicates"], trained.config["seed"]
    intervals = confidence_intervals(y, probs, lesions, interval_thresholds(trained.operating_points), replicates,
                                     seed)
    balanced = intervals["figures"]["balanced_accuracy"]
    return {
        "balanced_multiclass_accuracy": {**balanced, "definition": BALANCED_MULTICLASS_ACCURACY},
        "metrics": classification_metrics(y, probs),
        "intervals": intervals,
        "mel_operating_points": [_operating_point(y, probs, p) for p in trained.operating_points],
        "subgroups": subgroup_report(y, probs, subgroup_columns(frame), lesions, replicates, seed),
    }


def _operating_point(y: np.ndarray, probs: np.ndarray, point: dict) -> dict:
    """A melanoma threshold chosen on the run's validation set, applied to the external set."""
    figures = at_threshold(y == MEL, probs[:, MEL], point["threshold"])
    return {"target_recall": point["target_recall"], "chosen_on": "validation", **figures}


def describe_external(external: ExternalSet) -> dict:
    truth = external.ground_truth
    return {
        "name": "ISIC 2018 Task 3 test set",
        "ground_truth": str(truth.path.resolve()),
        "ground_truth_format": truth.format,
        "images_root": str(external.root.resolve()),
        "images": len(truth.frame),
        "lesions": int(truth.frame["lesion_id"].nunique()),
        "lesion_ids": truth.lesion_note(),
        "synthetic": truth.synthetic,
    }


def notes(external: ExternalSet, trained: TrainedModel) -> list[str]:
    out = ["The ISIC 2018 Task 3 test set was held out from HAM10000 but comes mostly from the same sources: "
           "new images from familiar clinics and devices, not another population.",
           "Melanoma thresholds were chosen on the run's validation set, never on the external set.",
           external.ground_truth.lesion_note()]
    if external.ground_truth.synthetic:
        out.append("The external images are the SYNTHETIC demo data: nothing here is an ISIC 2018 result.")
    if trained.synthetic_data:
        out.append("The run was trained on the SYNTHETIC demo data: nothing here is a HAM10000 result.")
    return out


# --------------------------------------------------------------------------- one run


def evaluate_external(run_dir: str | Path, trained: TrainedModel, external: ExternalSet, batch_size: int = 64,
                      tta: bool = False) -> dict:
    """Predict the external set with a loaded run, write predictions_external.csv (and _tta.csv with
    `tta`) and metrics_external.json into `run_dir`; returns the metrics."""
    run_dir = Path(run_dir)
    internal = _internal_metrics(run_dir)
    result = {
        "run": str(run_dir.resolve()),
        "synthetic_training_data": trained.synthetic_data,
        "external_data": describe_external(external),
        **_evaluate_and_write(run_dir, trained, external, batch_size, tta=False),
        "internal_test": internal["test"],
        "internal_test_intervals": internal.get("test_intervals"),
        "notes": notes(external, trained),
    }
    if tta:  # beside the plain figures, never instead of them (as in metrics.json)
        result["tta"] = {"views": "8 dihedral (4 quarter turns, each also mirrored), probabilities averaged",
                         **_evaluate_and_write(run_dir, trained, external, batch_size, tta=True),
                         "internal_test": internal.get("tta", {}).get("test")}
    results.write_external_metrics(run_dir, result)
    return result


def _evaluate_and_write(run_dir: Path, trained: TrainedModel, external: ExternalSet, batch_size: int,
                        tta: bool) -> dict:
    probs = predict_external(trained, external, batch_size, tta)
    frame = results.predictions_frame(external.image_ids, external.labels, probs)
    path = results.write_predictions(run_dir, results.EXTERNAL, frame, "_tta" if tta else "")
    return {"predictions": path.name, **external_figures(external, probs, trained)}


def _internal_metrics(run_dir: Path) -> dict:
    metrics = results.read_metrics(run_dir)
    if metrics is None:
        raise DatasetError(f"{run_dir / results.METRICS} not found: {run_dir} is not a finished run folder (it "
                           f"needs {results.METRICS} beside {results.CHECKPOINT} for the internal figures)")
    return metrics


def sweep_runs(sweep_dir: str | Path) -> list[Path]:
    """Every run of a sweep that holds a checkpoint (best.pt): each arm, then its other seeds (seeds/)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise DatasetError(f"sweep folder {sweep_dir} is not a directory")
    arms = sorted(p for p in sweep_dir.iterdir() if (p / results.CHECKPOINT).is_file())
    if not arms:
        raise DatasetError(f"no arm folder with {results.CHECKPOINT} in {sweep_dir}: train the sweep first, or "
                           "pass --run RUN_DIR")
    return [run for arm in arms
            for run in [arm, *sorted(p.parent for p in arm.glob(f"{results.SEEDS_DIR}/*/{results.CHECKPOINT}"))]]


# --------------------------------------------------------------------------- the printed table


TABLE_NOTE = ("external balanced accuracy is the ISIC 2018 Task 3 metric (balanced multiclass accuracy); "
              "[95% bootstrap interval]")


def comparison_table(result: dict) -> str:
    """Internal test figures beside the external ones (with the external 95% intervals); see TABLE_NOTE."""
    internal = result["internal_test"]
    blocks = [("external", result)] + ([("external TTA", result["tta"])] if "tta" in result else [])
    rows = [
        ("balanced accuracy", internal["balanced_accuracy"], "balanced_accuracy"),
        ("accuracy", internal["accuracy"], "accuracy"),
        ("macro-F1", internal["macro_f1"], "macro_f1"),
        ("mel recall", internal["per_class"]["mel"]["recall"], "recall_mel"),
    ]
    header = f"  {'':20s} {'internal test':>14s}" + "".join(f"  {name:>26s}" for name, _ in blocks)
    lines = [header]
    for label, value, key in rows:
        cells = "".join(f"  {interval_text(block['intervals']['figures'][key], 4, 'n/a'):>26s}" for _, block in blocks)
        lines.append(f"  {label:20s} {_number(value):>14s}{cells}")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.evaluation.external", description=__doc__.split("\n\n")[0])
    parser.add_argument("--external", type=Path, required=True, metavar="DIR",
                        help="folder holding the ISIC 2018 Task 3 test images and ground truth")
    runs = parser.add_mutually_exclusive_group(required=True)
    runs.add_argument("--run", type=Path, nargs="+", metavar="RUN_DIR", help="finished run folder(s) (hold best.pt)")
    runs.add_argument("--sweep", type=Path, metavar="SWEEP_DIR", help="every arm of this sweep that holds best.pt")
    parser.add_argument("--labels", type=Path, metavar="FILE",
                        help="the ground-truth table, when it is not ISIC2018_Task3_Test_GroundTruth.csv under DIR")
    parser.add_argument("--tta", action="store_true",
                        help="also predict with 8-view flip/rot90 test-time augmentation (reported beside)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per batch (default 64)")
    return add_verbosity_flags(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    try:
        run_dirs = sweep_runs(args.sweep) if args.sweep else args.run
        missing = [str(r) for r in run_dirs if not (r / results.CHECKPOINT).is_file()]
        if missing:
            raise DatasetError(f"no {results.CHECKPOINT} in {', '.join(missing)}: not finished run folder(s)")
        external = load_external(args.external, args.labels)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = external.ground_truth
    print(f"external: {len(info.frame)} images from {info.path} ({info.format}); {info.lesion_note()}")
    print(TABLE_NOTE)
    failed = [run for run in run_dirs if not _evaluate_one(run, external, args.batch_size, args.tta)]
    if failed:
        print(f"error: {len(failed)} run(s) failed: {', '.join(str(r) for r in failed)}", file=sys.stderr)
    return 1 if failed else 0


def _evaluate_one(run_dir: Path, external: ExternalSet, batch_size: int, tta: bool) -> bool:
    try:
        trained = load_run(run_dir)
        result = evaluate_external(run_dir, trained, external, batch_size, tta)
    except (OSError, ValueError, KeyError) as e:  # DatasetError and ImageError are ValueErrors
        print(f"error: {run_dir}: {e}", file=sys.stderr)
        return False
    print(f"\n{run_dir}" + ("  [trained on SYNTHETIC demo data]" if result["synthetic_training_data"] else "")
          + ("  [external set is SYNTHETIC]" if result["external_data"]["synthetic"] else ""))
    print(comparison_table(result))
    print(f"  -> {run_dir / results.EXTERNAL_METRICS}")
    return True


if __name__ == "__main__":
    sys.exit(main())
