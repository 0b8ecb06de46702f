"""Linux: real-time scheduling for the monitoring threads (``procobsrv watch --realtime``).

The Linux ``Platform.realtime_threads``; the framework and the command line reach it
through the platform (``current_platform().realtime_threads()``).

Measured in docs/performance.md: under the default scheduler a woken monitor thread often
waits for the process it reports on (a child busy in ``exec``) to leave the CPU, which puts
about 1 ms on the latency of a fork event. With SCHED_FIFO the wake-up preempts at once.
Like forkstat's ``-r``, this needs root, CAP_SYS_NICE or an RLIMIT_RTPRIO allowance.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..errors import MonitorError

#: Low among real-time priorities: above every normal task, below the kernel's own threads.
DEFAULT_PRIORITY = 10


@contextlib.contextmanager
def realtime_threads(priority: int = DEFAULT_PRIORITY) -> Iterator[None]:
    """Threads started inside the block run SCHED_FIFO at ``priority``; the calling thread
    itself is back to its old policy when the block ends.

    Linux applies a policy per thread and a new thread inherits its creator's, so
    ``with realtime_threads(): scope.start_monitoring()`` raises only the monitor and
    retrieval threads, not the application's. Raises MonitorError saying what to do when
    the system refuses.
    """
    old_policy, old_param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError as exc:
        raise MonitorError(
            "real-time scheduling was refused: run as root, give the interpreter CAP_SYS_NICE, "
            "or raise RLIMIT_RTPRIO (ulimit -r); or run without --realtime"
        ) from exc
    try:
        yield
    finally:
        os.sched_setscheduler(0, old_policy, old_param)
