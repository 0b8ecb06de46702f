"""The service's listening socket: made safe to trust, or handed over by systemd.

Nobody but the service may replace the socket or listen in its place: its directory must
be a real directory (not a link) that only root (or the service's own user) can write, so
no other user can unlink or rename the socket or put another file there. The socket file
itself is 0666: anyone may connect; what a client then sees is the service's decision
(``rule.py``).

One service per path: a lock file beside the socket (``flock``, released by the kernel when
the service dies) refuses a second service; a socket file left by a service that died is
removed only when the lock is ours and connecting to it is refused (no one listens there).
Something listening there without the lock (systemd's socket unit) is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
from dataclasses import dataclass

from ..errors import MonitorError

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/run/procobsrv/events.sock"
#: The directory the service makes when it is missing: others may enter, not write.
DIRECTORY_MODE = 0o755
SOCKET_MODE = 0o666
BACKLOG = 128
#: sd_listen_fds(3): the first fd systemd passes.
LISTEN_FDS_START = 3


@dataclass
class Listening:
    """A listening socket, and what closing it must undo."""

    sock: socket.socket
    path: str
    #: (st_dev, st_ino) of the socket file this service made (None: systemd's).
    made: tuple[int, int] | None = None
    lock_fd: int = -1

    def close(self) -> None:
        """Stop listening; remove the socket file if it is still the one made here."""
        self.sock.close()
        if self.made is not None:
            with contextlib.suppress(OSError):
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self.made:
                    os.unlink(self.path)
        if self.lock_fd >= 0:
            os.close(self.lock_fd)  # releases the lock
            self.lock_fd = -1


def activated() -> socket.socket | None:
    """The listening socket systemd passed (socket activation: LISTEN_PID is this process,
    LISTEN_FDS 1), or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = int(os.environ.get("LISTEN_FDS", "0"))
    if count != 1:
        raise MonitorError(f"systemd passed {count} sockets; the unit must have one ListenStream=")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for the children
    sock = socket.socket(fileno=LISTEN_FDS_START)
    os.set_inheritable(sock.fileno(), False)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise MonitorError("the socket systemd passed is not a Unix stream socket")
    return sock


def listen(path: str) -> Listening:
    """Bind and listen on ``path``; MonitorError saying why not (an unsafe directory,
    another service on the path, something else there)."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    _safe_directory(directory)
    lock_fd = _lock(path + ".lock")
    try:
        _clear_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, SOCKET_MODE)  # before listen: nobody connects meanwhile
            st = os.lstat(path)
            sock.listen(BACKLOG)
        except OSError as exc:
            sock.close()
            raise MonitorError(f"cannot listen on {path}: {exc.strerror}") from exc
    except BaseException:
        os.close(lock_fd)
        raise
    return Listening(sock, path, (st.st_dev, st.st_ino), lock_fd)


def _safe_directory(directory: str) -> None:
    """Make ``directory`` (0755) if missing; refuse one that another user could write."""
    try:
        os.mkdir(directory, DIRECTORY_MODE)
        os.chmod(directory, DIRECTORY_MODE)  # whatever the umask
    except FileExistsError:
        pass
    except OSError as exc:
        raise MonitorError(
            f"cannot make the socket's directory {directory}: {exc.strerror}"
        ) from exc
    st = os.lstat(directory)
    why = ""
    if not stat.S_ISDIR(st.st_mode):
        why = "is not a directory (a symbolic link?)"
    elif st.st_uid not in (0, os.geteuid()):
        why = f"belongs to uid {st.st_uid}"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        why = f"is writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    if why:
        raise MonitorError(
            f"the socket's directory {directory} {why}: another user could replace the "
            f"socket there. Use a directory only root can write, e.g. {DEFAULT_SOCKET}"
        )


def _lock(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise MonitorError(
            f"another procobsrv service (pid {holder}) is serving {path.removesuffix('.lock')}"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _clear_stale(path: str) -> None:
    """Remove a socket file nobody listens on (its service died); refuse anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise MonitorError(f"{path} exists and is not a socket: remove it, or pick another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)  # a full backlog (EAGAIN) is someone listening: refused below
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno != errno.ECONNREFUSED:
            raise MonitorError(f"cannot tell whether {path} is in use: {exc.strerror}") from exc
    else:
        raise MonitorError(
            f"something already listens on {path} (a systemd socket unit?): not replacing it"
        )
    finally:
        probe.close()
    log.info("removing %s, left by a service that is no longer running", path)
    os.unlink(path)
