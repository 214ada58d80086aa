"""What Tune varies: the arm (a grid over the arms) and, with --samples K > 1, K draws per arm,
or with --seeds N > 1, N training seeds per arm.

With one sample an arm runs its config as written: the ablation as the study ran it.
With K samples each of the K trials of an arm draws lr and weight decay (log-uniform),
and the melanoma multiplier where the arm uses one (mel_multiplier != 1).
With N seeds an arm runs as written N times, with training seeds seed, seed + 1, ... on
the same split: the spread between them is what retraining alone changes. (Choose the
hyperparameters with --samples first; run_all refuses both at once.)
"""
from __future__ import annotations

from ray import tune

LR = (1e-4, 1e-3)  # AdamW learning rate, log-uniform
WEIGHT_DECAY = (1e-5, 1e-2)  # log-uniform
MEL_MULTIPLIER = (1.5, 4.0)  # log-uniform, only for arms that up-weight melanoma


def param_space(run_configs: dict[str, dict], samples: int, sweep: dict, seeds: int = 1) -> dict:
    """Tune's param_space: `run_configs` maps arm -> resolved RunConfig dict."""
    space = {
        "arm": tune.grid_search(list(run_configs)),
        # Every arm's config as a constant; the trial picks its own. (A sample_from returning the
        # dict comes back as a tuple for trials that had not started when a sweep is restored.)
        "arm_configs": run_configs,
        "sweep": sweep,
    }
    if seeds > 1:
        space["seed_offset"] = tune.grid_search(list(range(seeds)))  # added to the arm's own seed
    if samples > 1:
        mel_arms = {arm for arm, cfg in run_configs.items() if cfg["mel_multiplier"] != 1}
        space.update(
            lr=tune.loguniform(*LR),
            weight_decay=tune.loguniform(*WEIGHT_DECAY),
            mel_multiplier=tune.sample_from(lambda config: tune.loguniform(*MEL_MULTIPLIER).sample()
                                            if config["arm"] in mel_arms else 1.0),
        )
    return space
