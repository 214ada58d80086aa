"""What one browser session looks at: the sweep, the arm, the tab, and whether the files changed."""
from __future__ import annotations

from pathlib import Path

import param

from dashboards.results import SweepView, UnsafePath, files_signature, list_sweeps, load_sweep, sweep_path


class Dashboard(param.Parameterized):
    """The selection shared by every tab, and kept in the page's address (sweep, arm, tab).
    `version` goes up whenever the selected sweep's files change on disk (a run wrote), so views
    that depend on it redraw."""

    # check_on_set: a name from the address that is not among the objects is refused (ValueError)
    sweep_name = param.Selector(default=None, objects=[], check_on_set=True, allow_None=True, label="Sweep")
    arm = param.Selector(default=None, objects=[], check_on_set=True, allow_None=True, label="Arm")
    tab = param.Selector(default=None, objects=[], check_on_set=True, allow_None=True,
                         doc="the open tab, by its name in the address (the app names them)")
    version = param.Integer(default=0)
    message = param.String(default="", doc="why a requested sweep or arm was refused, if one was")

    def __init__(self, results_root: str | Path, requested: str | None = None, arm: str | None = None):
        super().__init__()
        self.results_root = Path(results_root)
        self.sweep: SweepView | None = None
        self._signature = None
        self.param.sweep_name.objects = list_sweeps(self.results_root)
        if requested:
            self.request(requested)
        if self.sweep_name is None and self.param.sweep_name.objects:
            self.sweep_name = self.param.sweep_name.objects[0]
        if arm and not self.message:
            self.request_arm(arm)

    def request(self, name: str) -> None:
        """Select a sweep by a name from outside (the page's URL); refuse one outside the root."""
        try:
            sweep_path(self.results_root, name)
        except (UnsafePath, FileNotFoundError) as e:
            self.message = f"Refused sweep {name!r}: {e}"
            return
        if name in self.param.sweep_name.objects:
            self.sweep_name = name
        else:  # a path to a sweep, not its name
            self.message = f"Refused sweep {name!r}: not the name of a sweep folder under the results root"

    def request_arm(self, name: str) -> None:
        """Select an arm of the selected sweep by a name from outside (the page's URL)."""
        if name in self.param.arm.objects:
            self.arm = name
        else:
            self.message = f"Sweep {self.sweep_name!r} has no arm {name!r}."

    @param.depends("sweep_name", watch=True)
    def _load(self) -> None:
        path = None if self.sweep_name is None else sweep_path(self.results_root, self.sweep_name)
        self._signature = None if path is None else files_signature(path)  # before reading: miss no write
        self.sweep = None if path is None else load_sweep(path)
        arms = self.sweep.arms if self.sweep else []
        self.param.arm.objects = arms
        if self.arm not in arms:
            self.arm = ((self.sweep.finished_arms() if self.sweep else []) or arms or [None])[0]
        self.version += 1

    def poll(self) -> None:
        """Periodic callback: pick up new sweeps, and reload the selected one if its files changed."""
        names = list_sweeps(self.results_root)
        if names != self.param.sweep_name.objects:
            self.param.sweep_name.objects = names
            if self.sweep_name not in names:  # none yet, or the selected one was deleted
                self.sweep_name = names[0] if names else None
                return
        if self.sweep is not None and files_signature(self.sweep.path) != self._signature:
            self._load()
