"""The evaluation stage: every figure of a run, computed from its predictions.

Training hands over predictions and nothing more: `evaluate_run(pred_val, pred_test,
test_info, replicates, seed)` is the content of metrics.json, and `classification_metrics`
with `selection_key` score the validation images each epoch. Inside:

- `metrics.py`: classification figures, model selection, the melanoma threshold and its
  operating points, and `evaluate_run`;
- `calibration.py` (temperature, ECE, reliability), `bootstrap.py` (lesion-level intervals,
  paired comparisons), `subgroups.py` (melanoma recall by sex, age, site, source);
- the command lines on finished runs' predictions: `python -m core.evaluation.compare` (two
  runs, paired) and `.ensemble` (mean of arms' predictions, a new run folder). Scoring a
  trained run on the ISIC 2018 Task 3 test set: `external.py` scores a loaded run (which it
  is handed: evaluation imports no torch); `python -m core.evaluate` is its command line.

The files read and written are the results contract's (core/results.py, docs/results-contract.md).
"""
__all__ = ["classification_metrics", "evaluate_run", "selection_key", "validation_scores"]


def __getattr__(name: str):
    """The entry points load metrics.py (and scikit-learn) when first used, not when a command
    line under core.evaluation is imported for its --help."""
    if name in __all__:
        from core.evaluation import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
