"""A sweep's findings: every comparison the study's design makes, on each headline test figure,
seed-aware, with the number of comparisons controlled.

The comparisons are each arm against baseline and the design's one-choice pairs
(`core.arms.comparisons`). Each difference comes from every training seed of both arms
and a lesion-level bootstrap of the shared test set (`core/evaluation/seeds.py`); the
p-values of all comparisons of a sweep are adjusted together with Benjamini-Hochberg
(the share of false findings among those called separated is held at 5%). A verdict is
`higher` or `lower` (separated at the adjusted level), `not separated`, or `one run`:
an arm with one training seed, whose training variance is not measured, is never called
separated. `sweep_findings` is the content of findings.json, which the report writes beside
report.md and the dashboard's sweep tab shows.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.arms import comparisons

if TYPE_CHECKING:
    import numpy as np

# The names of core.evaluation.seeds.FIGURES, in its order. The statistics (and numpy, pandas and
# scipy with them) load in sweep_findings, so that `python -m core.evaluation.findings --help` is quick.
FIGURE_NAMES = {"accuracy": "test accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1",
                "recall_mel": "melanoma recall", "mel_auc": "melanoma AUC"}
ADJUSTMENT = "bh"
ADJUSTMENT_TEXT = "Benjamini-Hochberg over every comparison of the sweep (false discovery rate 5%)"
VERDICTS = ("higher", "lower", "not separated", "one run")
ONE_RUN_NOTE = "one training run: training variance not measured"


def arm_test_predictions(arm_dir: Path, image_ids: list[str] | None = None) -> tuple[np.ndarray, list[np.ndarray],
                                                                                      list[str]]:
    """The test labels, each seed run's test probabilities (rows in `image_ids` order, default the
    first run's) and the image ids."""
    from core import results

    y, probs, ids = None, [], image_ids
    for run in results.seed_runs(arm_dir):
        labels, p, frame = results.read_predictions(results.predictions_path(run, "test"))
        if ids is None:
            ids = list(frame["image_id"])
        order = frame.set_index("image_id").index.get_indexer(ids)
        if len(frame) != len(ids) or (order < 0).any():
            raise ValueError(f"{run} was tested on other images than the sweep's other runs: the findings compare "
                             "runs of one sweep, which share its split")
        y = labels[order] if y is None else y
        probs.append(p[order])
    return y, probs, ids


def sweep_findings(sweep_dir: str | Path, arms: list[str], same_run_as: dict[str, str] | None = None,
                   replicates: int | None = None, seed: int = 0) -> dict:
    """findings.json of a sweep: every design comparison among the finished `arms` on FIGURES, with
    `replicates` lesion resamples (default: the first compared arm's `bootstrap_replicates`, as its runs'
    own intervals)."""
    from core import results
    from core.config import RunConfig
    from core.evaluation.seeds import FIGURES, SEED_AWARE, adjust_p_values, compare_arms, replicate_figures, verdict

    sweep_dir = Path(sweep_dir)
    finished = [arm for arm in arms if results.seed_runs(sweep_dir / arm)]
    pairs = comparisons(finished, same_run_as)
    needed = list(dict.fromkeys(arm for pair in pairs for arm in pair))
    if replicates is None:
        config = results.read_config(sweep_dir / needed[0]) if needed else None
        replicates = (config or {}).get("bootstrap_replicates", RunConfig.bootstrap_replicates)
    figures, seeds, ids, lesions = {}, {}, None, None
    for arm in needed:
        y, probs, ids = arm_test_predictions(sweep_dir / arm, ids)
        if lesions is None:
            lesions = results.read_splits(results.seed_runs(sweep_dir / arm)[0]).set_index("image_id").loc[
                ids, "lesion_id"].to_numpy()
        figures[arm] = replicate_figures(y, probs, lesions, replicates, seed)
        seeds[arm] = len(probs)
    entries = []
    for reference, arm in pairs:
        for figure in FIGURES:
            compared = compare_arms(figures[reference][figure], figures[arm][figure], seed=seed)
            entries.append({"arm": arm, "reference": reference, "metric": figure, **compared})
    adjusted = adjust_p_values([e["p_value"] for e in entries], ADJUSTMENT)
    for entry, p in zip(entries, adjusted, strict=True):
        entry.update(p_adjusted=p, verdict=verdict(entry, p))
    return {"level": 0.95, "replicates": replicates, "bootstrap_seed": seed, "seeds": seeds,
            "comparisons": sum(p is not None for p in adjusted), "adjustment": ADJUSTMENT_TEXT,
            "method": SEED_AWARE, "findings": entries}


def _signed(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def interval(entry: dict) -> str:
    """`+0.031 [+0.012, +0.050]`: the difference arm minus reference and its interval."""
    return f"{_signed(entry['estimate'])} [{_signed(entry['low'])}, {_signed(entry['high'])}]"


def sentence(entry: dict) -> str:
    """One finding in words."""
    what = FIGURE_NAMES[entry["metric"]]
    seeds = " x ".join(map(str, entry["seeds"]))
    if entry["verdict"] == "one run":
        return (f"`{entry['arm']}` - `{entry['reference']}`, {what}: {interval(entry)} ({ONE_RUN_NOTE}; "
                f"{seeds} seeds).")
    chance = (f"P({entry['arm']} > {entry['reference']}) = {entry['p_improvement']:.2f}"
              if entry["p_improvement"] is not None else "")
    if entry["verdict"] == "not separated":
        return f"`{entry['arm']}` against `{entry['reference']}`, {what}: {interval(entry)}, not separated."
    return (f"`{entry['arm']}` has {entry['verdict']} {what} than `{entry['reference']}`: {interval(entry)}, "
            f"{chance} over {seeds} seeds, adjusted p {entry['p_adjusted']:.3g}.")


def findings_markdown(found: dict) -> list[str]:
    """The report's Findings section: the separated differences in words, then the rest."""
    entries = found["findings"]
    if not entries:
        return ["No comparison: the sweep has no finished pair of arms that the design compares."]
    method = (f"{found['comparisons']} comparisons ({len({(e['arm'], e['reference']) for e in entries})} pairs of "
              f"arms x {len(FIGURE_NAMES)} figures), {found['replicates']} lesion-level bootstrap replicates; p-values "
              f"adjusted by {found['adjustment']}. {found['method']}.")
    separated = [sentence(e) for e in entries if e["verdict"] in ("higher", "lower")]
    one_run = [e for e in entries if e["verdict"] == "one run"]
    lines = [method, ""]
    if one_run and len(one_run) == len(entries):
        lines.append(f"Every arm here is {ONE_RUN_NOTE}: nothing is called separated. Rerun with `--seeds 3` or more.")
    lines += [f"- {s}" for s in separated] or (["No difference is separated."] if not one_run else [])
    rest = [f"`{e['arm']}` - `{e['reference']}` {FIGURE_NAMES[e['metric']]} {interval(e)}"
            for e in entries if e["verdict"] == "not separated"]
    if rest:
        lines += ["", "Not separated: " + "; ".join(rest) + "."]
    if one_run and len(one_run) < len(entries):
        lines += ["", f"One run ({ONE_RUN_NOTE}): " + "; ".join(
            f"`{e['arm']}` - `{e['reference']}` {FIGURE_NAMES[e['metric']]} {interval(e)}" for e in one_run) + "."]
    return lines


def agreement(first: dict, second: dict) -> dict[str, list[dict]]:
    """Two findings.json of the same design (a rerun with other seeds): the findings separated in both
    with the same verdict (`confirmed`), with opposite verdicts (`contradicted`), in one only
    (`one_only`), and in neither (`neither`)."""
    def key(entry: dict) -> tuple[str, str, str]:
        return entry["arm"], entry["reference"], entry["metric"]

    seconds = {key(e): e for e in second["findings"]}
    out = {"confirmed": [], "contradicted": [], "one_only": [], "neither": []}
    for a in first["findings"]:
        b = seconds.get(key(a))
        if b is None:
            continue
        separated = [e["verdict"] in ("higher", "lower") for e in (a, b)]
        kind = ("confirmed" if all(separated) and a["verdict"] == b["verdict"] else "contradicted" if all(separated)
                else "one_only" if any(separated) else "neither")
        out[kind].append({"arm": a["arm"], "reference": a["reference"], "metric": a["metric"],
                          "first": a["verdict"], "second": b["verdict"],
                          "first_interval": interval(a), "second_interval": interval(b)})
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m core.evaluation.findings FIRST SECOND`: does a rerun confirm a sweep's findings?"""
    parser = argparse.ArgumentParser(prog="python -m core.evaluation.findings",
                                     description="Compare the findings.json of a sweep and of its rerun with other "
                                                 "seeds: which separated findings both confirm, and which they "
                                                 "contradict.")
    parser.add_argument("first", type=Path, help="a report's findings.json")
    parser.add_argument("second", type=Path, help="the rerun's findings.json")
    args = parser.parse_args(argv)
    try:
        found = [json.loads(path.read_text()) for path in (args.first, args.second)]
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = agreement(*found)
    for kind in ("confirmed", "contradicted", "one_only"):
        print(f"{kind}: {len(result[kind])}")
        for e in result[kind]:
            print(f"  {e['arm']} - {e['reference']} {FIGURE_NAMES[e['metric']]}: {e['first']} {e['first_interval']}"
                  f" / {e['second']} {e['second_interval']}")
    print(f"neither separated: {len(result['neither'])}")
    return 1 if result["contradicted"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
