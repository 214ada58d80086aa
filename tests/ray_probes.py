"""Test probes inside Ray's worker processes: patch a module of the project when it is imported.

Ray's `worker_process_setup_hook` runs in every worker process at start-up, before the
task or actor it runs is unpickled; `patch_on_import` there leaves the process light
(nothing is imported) until the project's module is, then hands it to `patch`.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Callable


class PatchOnImport(importlib.abc.MetaPathFinder):
    def __init__(self, name: str, patch: Callable[[ModuleType], None]):
        self.name, self.patch = name, patch

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            self.patch(module)

        spec.loader.exec_module = exec_module
        return spec


def patch_on_import(name: str, patch: Callable[[ModuleType], None]) -> None:
    sys.meta_path.insert(0, PatchOnImport(name, patch))
