"""``procobsrv driver install|start|stop|remove|status``: manage ProcObsrv.sys (Windows only)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

ACTIONS = ("install", "start", "stop", "remove", "status")
#: Exit codes of ``procobsrv driver``.
EXIT_OK = 0
EXIT_ERROR = 2


def register(subparsers: Any) -> None:
    """Add the ``driver`` subcommand to the console tool's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "driver",
        help="install, start, stop, remove or query the ProcObsrv.sys driver (Windows)",
        description="Manage the ProcObsrv kernel driver through the Service Control Manager "
        "(Windows only; needs an elevated prompt except for 'status').",
    )
    p.add_argument("action", choices=ACTIONS, help="what to do with the driver service")
    p.add_argument(
        "--path",
        metavar="SYS",
        help="ProcObsrv.sys to install (default: the copy shipped inside the package)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``procobsrv driver ACTION``; the exit code (EXIT_OK or EXIT_ERROR)."""
    if sys.platform != "win32":
        print(
            f"procobsrv driver: ProcObsrv.sys is a Windows kernel driver; 'driver {args.action}' "
            f"needs Windows (this system is {sys.platform}). On Linux procobsrv uses the "
            f"kernel's process-events connector and needs no driver.",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return _run_windows(args.action, args.path)


def _run_windows(action: str, path: str | None) -> int:
    from ..errors import MonitorError
    from ..windows.installer import DriverService

    try:
        service = DriverService(path)
        if action == "install":
            installed = "installed" if service.install() else "already installed"
            print(f"{service.name}: {installed} ({service.path})")
        elif action == "start":
            started = service.start()
            print(f"{service.name}: {'started' if started else 'already running'}")
        elif action == "stop":
            stopped = service.stop()
            print(f"{service.name}: {'stopped' if stopped else 'was not running'}")
        elif action == "remove":
            removed = service.remove()
            print(f"{service.name}: {'removed' if removed else 'was not installed'}")
        else:
            print(service.status().describe())
    except MonitorError as exc:
        print(f"procobsrv driver {action}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK
