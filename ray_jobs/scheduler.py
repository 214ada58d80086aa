"""Early stopping per arm: ASHA compares a trial only with the other samples of its own arm.

Arms select on different metrics (macro-F1, accuracy, melanoma recall) and differ in
cost, so one ASHA over the whole sweep would rank unlike against unlike. `PerArmScheduler`
keeps one `AsyncHyperBandScheduler` per arm, on that arm's `select_on` metric, and routes
each trial's events to its arm's scheduler. Trials start in submission order (FIFO).
"""
from __future__ import annotations

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

TIME_ATTR = "epoch"  # reported by every epoch; unlike training_iteration it survives a retry


class PerArmScheduler(FIFOScheduler):
    def __init__(self, schedulers: dict[str, TrialScheduler]):
        super().__init__()
        self.schedulers = schedulers

    def _of(self, trial) -> TrialScheduler:
        return self.schedulers[trial.config["arm"]]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return metric is None and mode is None  # each arm's scheduler has its own

    def on_trial_add(self, tune_controller, trial):
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial):
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial):
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{arm}: {s.debug_string()}" for arm, s in self.schedulers.items())


def make_scheduler(kind: str, run_configs: dict[str, dict], samples: int) -> TrialScheduler:
    """`asha`: per-arm ASHA (a no-op with one sample per arm, so plain FIFO then); `fifo`: none."""
    if kind == "fifo" or samples == 1:
        return FIFOScheduler()
    return PerArmScheduler({
        arm: AsyncHyperBandScheduler(
            time_attr=TIME_ATTR, metric=cfg["select_on"], mode="max", max_t=cfg["epochs"],
            grace_period=max(1, cfg["epochs"] // 4), reduction_factor=2,
            # A trial that reaches its last epoch goes on to evaluate and write its results.
            stop_last_trials=False)
        for arm, cfg in run_configs.items()
    })
