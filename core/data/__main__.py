"""`python -m core.data {demo,check,split,stats,cache,duplicates,download}`: the data layer's command line."""
from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

from core.data import download
from core.log import add_verbosity_flags, setup_logging

log = logging.getLogger(__name__)


# Each command imports what it runs, so `--help` answers before pandas, torch and the model load.


def cmd_demo(args: argparse.Namespace) -> int:
    from core.data.demo import make_demo_dataset

    frame = make_demo_dataset(args.out, n=args.n, seed=args.seed, masks=args.masks)
    log.info("wrote %d SYNTHETIC images (%d lesions) to %s", len(frame), frame["lesion_id"].nunique(), args.out)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from core.data.check import check_dataset
    from core.data.dataset import load_dataset

    report = check_dataset(load_dataset(args.data_root, args.metadata), decode=not args.no_decode,
                           duplicates=args.duplicates)
    print(json.dumps(report.summary, indent=2))
    for problem in report.problems:
        print(problem)
    errors = len(report.errors)
    print(f"{errors} error(s), {len(report.problems) - errors} warning(s)")
    return 1 if errors else 0


def cmd_split(args: argparse.Namespace) -> int:
    from core.data.dataset import load_dataset
    from core.data.metadata import DatasetError, read_metadata
    from core.data.split import duplicates_report, lesion_split, split_summary
    from core.io import write_csv

    if args.metadata:
        meta = read_metadata(args.metadata)
    elif args.data_root:
        meta = load_dataset(args.data_root).metadata
    else:
        raise DatasetError("split needs --data-root DIR or --metadata CSV")
    frame = lesion_split(meta, seed=args.seed, duplicates=args.duplicates)
    write_csv(args.out, frame)
    print(split_summary(frame).assign(total=lambda t: t.sum(axis=1)).to_string())
    if args.duplicates:
        report = duplicates_report(meta, args.duplicates, frame, seed=args.seed)
        print(f"duplicates: {report['pairs']} pair(s) in this dataset, {report['links_applied']} extra link(s) "
              f"applied; {report['crossing_without']} pair(s) would otherwise have crossed splits, "
              f"{report['crossing_with']} do now")
    log.info("wrote %s", args.out)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from core.data.dataset import load_dataset
    from core.data.images import load_rgb
    from core.data.stats import write_stats

    ds = load_dataset(args.data_root, args.metadata)

    def load_image(image_id: str):
        return load_rgb(ds.images[image_id])

    stats = write_stats(ds.metadata, args.out, load_image)
    print(json.dumps({k: stats[k] for k in ("rows", "lesions", "class_counts", "synthetic")}, indent=2))
    log.info("wrote figures and stats.json to %s", args.out)
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from core.data.cache import build_cache
    from core.data.dataset import load_dataset

    ds = load_dataset(args.data_root, args.metadata)
    ids = sorted(ds.metadata["image_id"])
    cache = build_cache(ds, ids, args.side, args.cache_dir)
    print(f"{len(cache)} images at {args.side}px in {cache.path}")
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    from core import duplicates
    from core.data.metadata import DatasetError
    from core.data.pairs import AUDIT_FILE
    from core.io import write_csv

    side = args.side or duplicates.DEFAULT_SIDE
    neighbours = args.neighbours or duplicates.DEFAULT_NEIGHBOURS
    min_inliers = duplicates.DEFAULT_MIN_INLIERS if args.min_inliers is None else args.min_inliers
    out = args.out or (Path("duplicates_across.csv") if args.against else args.data_root / AUDIT_FILE)
    sheet = args.sheet or out.with_name(f"{out.stem}_review.png")
    for path in (out, sheet):  # before minutes of work, not after
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=path.parent).close()
        except OSError as e:
            raise DatasetError(f"cannot write {path} ({e.strerror}); pass --out (and --sheet) elsewhere, and give "
                               "a sweep the list with --set duplicates_file=FILE") from None
    start = time.perf_counter()
    ds = duplicates.load_images(args.data_root, args.metadata)
    against = duplicates.load_images(args.against) if args.against else None
    pairs = duplicates.find_duplicates(ds, against, neighbours, min_inliers, side, args.cache_dir)
    write_csv(out, pairs)
    duplicates.write_review_sheet(pairs, ds, against, sheet, top=args.top)
    seconds = time.perf_counter() - start
    peak = {who: resource.getrusage(who).ru_maxrss / 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)}
    images = len(ds.metadata) + (len(against.metadata) if against else 0)
    kind = f"across {args.data_root} and {args.against}" if against else "under different lesion_ids"
    print(f"{len(pairs)} pair(s) {kind} among {neighbours} nearest neighbours with >= {min_inliers} "
          "keypoint inliers")
    print(f"{images} images in {seconds:.0f} s; peak memory {peak[resource.RUSAGE_SELF]:.0f} MiB "
          f"(largest worker {peak[resource.RUSAGE_CHILDREN]:.0f} MiB)")
    log.info("wrote %s and the review sheet %s", out, sheet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_root(p: argparse.ArgumentParser, required: bool = True) -> argparse.ArgumentParser:
        p.add_argument("--data-root", type=Path, required=required, help="folder holding the dataset")
        p.add_argument("--metadata", type=Path, help="metadata table, when its name is not HAM10000_metadata.*")
        return p

    p = sub.add_parser("demo", help="write the SYNTHETIC demo dataset in HAM10000 layout")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=1500, help="about how many images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--masks", action="store_true", help="also write each image's lesion mask")
    p.set_defaults(run=cmd_demo)

    p = with_root(sub.add_parser("check", help="validate a dataset; exit 1 on any error"))
    p.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster)")
    p.add_argument("--duplicates", type=Path, help="duplicates CSV: warn about its pairs under different lesion_ids")
    p.set_defaults(run=cmd_check)

    p = with_root(sub.add_parser("split", help="lesion-wise stratified train/val/test split"), required=False)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duplicates", type=Path, help="duplicates CSV: keep each listed pair in one split")
    p.set_defaults(run=cmd_split)

    p = with_root(sub.add_parser("stats", help="class and metadata figures, sample strip, stats.json"))
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=cmd_stats)

    p = with_root(sub.add_parser("cache", help="pre-build the resized image cache"))
    p.add_argument("--side", type=int, default=224)
    p.add_argument("--cache-dir", type=Path)
    p.set_defaults(run=cmd_cache)

    p = with_root(sub.add_parser("duplicates", help="near-duplicate images under different lesion_ids"))
    p.add_argument("--against", type=Path, help="a second dataset folder: pairs across the two instead")
    p.add_argument("--out", type=Path, help="the pairs CSV (default: DATA_ROOT/duplicates.csv, where a sweep "
                                            "finds it; with --against, ./duplicates_across.csv)")
    p.add_argument("--sheet", type=Path, help="review sheet PNG (default: beside --out, *_review.png)")
    p.add_argument("--neighbours", type=int, help="candidates: each image's k nearest neighbours by the "
                                                   "whitened embedding (default: core.duplicates.DEFAULT_NEIGHBOURS)")
    p.add_argument("--min-inliers", type=int, help="flag a candidate with at least this many keypoint inliers "
                                                    "(default: core.duplicates.DEFAULT_MIN_INLIERS, chosen on "
                                                    "HAM10000 in benchmarks/README.md, 'The leak audit')")
    p.add_argument("--side", type=int, help="input side of the embedding model (default: DEFAULT_SIDE there)")
    p.add_argument("--top", type=int, default=24, help="pairs on the review sheet")
    p.add_argument("--cache-dir", type=Path)
    p.set_defaults(run=cmd_duplicates)

    p = sub.add_parser("download", help="HAM10000 and the ISIC 2018 Task 3 test set from the Harvard Dataverse")
    download.add_arguments(p)
    p.set_defaults(run=download.run)
    for command in sub.choices.values():
        add_verbosity_flags(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    from core.data.images import ImageError
    from core.data.metadata import DatasetError

    try:
        return args.run(args)
    except (DatasetError, ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
