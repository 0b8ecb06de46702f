"""Names that cannot mislead: every module of the package is reached by its own name.

``procobsrv.monitor`` is the public ``with monitor(handler):`` function; the module of
ProcessThreadMonitor is ``procobsrv.process_monitor``. When the two shared a name,
``import procobsrv.monitor`` gave the function and patching the module's constants failed.
"""

from __future__ import annotations

import importlib
import pkgutil
import types
from unittest import mock

import procobsrv
from procobsrv import process_monitor


def test_no_name_of_the_package_hides_one_of_its_modules() -> None:
    for info in pkgutil.iter_modules(procobsrv.__path__):
        if info.name.startswith("_"):
            continue  # __main__ runs the command line when imported
        module = importlib.import_module(f"procobsrv.{info.name}")
        assert getattr(procobsrv, info.name) is module, f"procobsrv.{info.name} is not its module"


def test_the_monitor_module_is_a_module_whose_constants_can_be_patched() -> None:
    module = importlib.import_module("procobsrv.process_monitor")
    assert isinstance(module, types.ModuleType)
    assert module.ProcessThreadMonitor is procobsrv.ProcessThreadMonitor
    original = module.HOLD_S
    with mock.patch("procobsrv.process_monitor.HOLD_S", original * 2):
        patched = process_monitor.HOLD_S
    assert patched == original * 2
    assert original == process_monitor.HOLD_S  # and undone


def test_procobsrv_monitor_is_the_public_function() -> None:
    assert isinstance(procobsrv.monitor, types.FunctionType)
    assert procobsrv.monitor.__module__ == "procobsrv.streams"
    assert "monitor" in procobsrv.__all__ and "process_monitor" not in procobsrv.__all__
