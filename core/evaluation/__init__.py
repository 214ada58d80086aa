"""The evaluation stage: every figure of a run, computed from its predictions.

Training hands over predictions and nothing more: `evaluate_run(pred_val, pred_test,
test_info, replicates, seed)` is the content of metrics.json, and `classification_metrics`
with `selection_key` score the validation images each epoch. Inside:

- `metrics.py`: classification figures, model selection, the melanoma threshold and its
  operating points, and `evaluate_run`;
- `calibration.py` (temperature, ECE, reliability), `bootstrap.py` (lesion-level intervals,
  paired comparisons), `subgroups.py` (melanoma recall by sex, age, site, source);
- the command lines on finished runs: `python -m core.evaluation.compare` (two runs, paired),
  `.ensemble` (mean of arms' predictions, a new run folder), `.external` (the ISIC 2018
  Task 3 test set).

The files read and written are the results contract's (core/results.py, docs/results.md).
"""
from core.evaluation.metrics import classification_metrics, evaluate_run, selection_key, validation_scores

__all__ = ["classification_metrics", "evaluate_run", "selection_key", "validation_scores"]
