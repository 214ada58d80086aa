"""The `dermablate` console script: `dermablate SUBCOMMAND [ARGS...]`.

Each subcommand is one module's own command line: everything after the subcommand goes unchanged
to that module's `main(argv)` (so `dermablate train --help` is core.train's help), and the module
is imported only once the subcommand is chosen: `dermablate --help` imports no torch, numpy,
pandas, ray or panel. The exit status is the module's (None counts as 0).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand: (module whose main(argv) runs it, one line for `dermablate --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("core.data.__main__", "the data layer: demo, check, split, stats, cache, duplicates, download"),
    "train": ("core.train", "train one ablation end to end (one process or one DDP rank)"),
    "sweep": ("ablations.run_all", "run every ablation arm as a Ray Tune sweep of Ray Train runs"),
    "report": ("dashboards.report", "write a sweep's report: report.md and PNG figures"),
    "serve": ("dashboards.__main__", "serve the Panel dashboard of a results folder"),
    "predict": ("core.predict", "predict images with a trained run: probabilities, melanoma flags, Grad-CAM"),
    "explain": ("core.explain", "Grad-CAM overlays for a run's test images and their heat on the lesion"),
    "export": ("core.export", "export a trained run: safetensors and timm config, ONNX, operating points, model card"),
    "evaluate": ("core.evaluate", "score trained runs on the ISIC 2018 Task 3 external test set"),
    "compare": ("core.evaluation.compare", "paired comparison of two runs on the same test set"),
    "ensemble": ("core.evaluation.ensemble", "evaluate an ensemble of arms (the mean of their probabilities)"),
    "confirm": ("core.evaluation.findings", "does a rerun with other seeds confirm a sweep's findings.json?"),
    "cvae": ("core.cvae.__main__", "train a cVAE on a dataset's training split, or draw from one"),
    "submit": ("ray_jobs.submit", "run a sweep on a Ray cluster as a Ray Job and follow its log"),
}


def build_parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    listing = "\n".join(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="dermablate", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Ray-distributed ablation runner for HAM10000 skin-lesion classification.",
        epilog=f"subcommands:\n{listing}\n\n`dermablate SUBCOMMAND --help` shows a subcommand's own options.")
    parser.add_argument("command", metavar="SUBCOMMAND", choices=list(COMMANDS), help="one of the subcommands below")
    # Everything after the subcommand, options included, is the module's; argparse does not look at it.
    parser.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER, help="the subcommand's own arguments")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:  # dispatch without parsing: ARGS reach the module byte for byte
        command, args = argv[0], argv[1:]
    else:  # --help, or no or an unknown subcommand: argparse prints the help or the error
        namespace = build_parser().parse_args(argv)
        command, args = namespace.command, namespace.args
    module = importlib.import_module(COMMANDS[command][0])
    status = module.main(args)
    return 0 if status is None else status


if __name__ == "__main__":
    sys.exit(main())
