"""The source study's own figures on the real HAM10000 (its report's tables): shown beside a sweep's own
figures only when the sweep ran on real data, never beside the synthetic demo's."""
from __future__ import annotations

import pandas as pd

# arm: (test accuracy, macro-F1, melanoma recall), lesion-wise split, test set of 1003 images.
STUDY = {
    "baseline": (0.7637, 0.6650, 0.7581),
    "sampler": (0.8006, 0.6756, 0.7016),
    "mel_upweight_x3": (0.7597, 0.6285, 0.7419),
    "baseline_synth": (0.7926, 0.6979, 0.6694),
    "long_mel_select": (0.7009, 0.6218, 0.7500),
    "b2_mel_select": (0.7697, 0.6958, 0.7823),
    "b2_260_acc_select": (0.8614, 0.7386, 0.5403),
    "b2_260_mel_sampler": (0.5374, 0.5666, 0.8548),
}
STUDY_OPERATING_POINT = ("b2_mel_select: threshold chosen on test for recall >= 0.85: "
                         "t = 0.13, precision 0.322, recall 0.855 (leaks test labels)")


def study_table() -> pd.DataFrame:
    return pd.DataFrame([(arm, *figures) for arm, figures in STUDY.items()],
                        columns=["arm", "study test acc", "study macro-F1", "study mel recall"])
