"""``procobsrv serve`` as root, its clients as real other users (setpriv): each user sees
its own processes, with exact command lines, and nobody else's; root and the service's
group see everyone's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.availability import require_ebpf
from tests.fakes.kernel_probe import NOBODY, OK, as_user, probe
from tests.fakes.service import (
    PROCOBSRV,
    RawClient,
    Served,
    private_directory,
    run_children,
    serving,
)

pytestmark = pytest.mark.kernel

#: Another uid no account uses (the service decides by number, not by name).
OTHER = 61777
#: A group number for --group.
WATCHERS = 61790

#: As the user: ApplicationScope with no options; says when it has started, waits for a
#: line on stdin (the test runs other users' children meanwhile), runs its own children,
#: then prints what it saw.
_PROGRAM = r"""
import json, subprocess, sys, time
from procobsrv import ApplicationScope, CallbackHandler

class Keep(CallbackHandler):
    def __init__(self):
        self.items = []
    def on_process_event(self, item, param):
        self.items.append(item)

keep = Keep()
scope = ApplicationScope.get_instance(keep)
scope.start_monitoring()
print(scope.source.name, flush=True)
sys.stdin.readline()
mine = {}
for n in range(10):
    argv = ["/bin/echo", sys.argv[1], str(n), "two words"]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    child.wait()
    mine[child.pid] = argv
time.sleep(1.0)
scope.stop_monitoring()
print(json.dumps({
    "mine": mine,
    "seen": [[i.kind.value, i.process_id, i.uid, i.euid, i.command_line] for i in keep.items],
}))
"""


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    require_ebpf()
    with serving(private_directory(), "--group", str(WATCHERS)) as service:
        yield service


def environment(served: Served) -> dict[str, str]:
    """The socket, as an environment variable: the programs themselves pass no option."""
    return {**os.environ, "PROCOBSRV_SOCKET": served.socket, "PYTHONUNBUFFERED": "1"}


def kernel_refuses_both(prefix: list[str]) -> None:
    allowed = probe(*prefix)
    if OK in (allowed.ebpf, allowed.connector):
        pytest.skip(
            f"this kernel lets the user listen itself ({allowed}): auto does not go to the service"
        )


def test_a_users_application_scope_sees_its_own_processes_and_none_of_roots(served: Served) -> None:
    prefix = as_user(NOBODY)
    kernel_refuses_both(prefix)
    tag = f"own-{os.getpid()}"
    program = subprocess.Popen(
        [*prefix, sys.executable, "-c", _PROGRAM, tag],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(served),
    )
    assert program.stdout is not None and program.stdin is not None
    assert program.stdout.readline().strip() == "service", (
        program.stderr.read() if program.stderr else ""
    )
    roots = run_children(f"root-{os.getpid()}", 10)
    others = run_children(f"other-{os.getpid()}", 10, tuple(as_user(OTHER)))
    out, err = program.communicate("go\n", timeout=60)
    assert program.returncode == 0, err
    assert "through the procobsrv service" in err, err  # the one warning line says so
    result = json.loads(out)
    mine = {int(pid): argv for pid, argv in result["mine"].items()}
    seen = result["seen"]
    execs = {pid: argv for kind, pid, _, _, argv in seen if kind == "exec" and pid in mine}
    assert execs == mine  # every exec, its exact command line
    exits = {pid for kind, pid, *_ in seen if kind == "exited"}
    assert set(mine) <= exits
    assert all(NOBODY in (uid, euid) for _, _, uid, euid, _ in seen), seen
    pids = {pid for _, pid, *_ in seen}
    assert not pids & (set(roots) | set(others))


def test_procobsrv_watch_as_a_user_sees_its_own_processes_through_the_service(
    served: Served,
) -> None:
    prefix = as_user(NOBODY)
    kernel_refuses_both(prefix)
    tag = f"watch-{os.getpid()}"
    watch = subprocess.Popen(
        [*prefix, *PROCOBSRV, "watch", "--json", "--duration", "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(served),
    )
    assert watch.stderr is not None
    said = [watch.stderr.readline()]
    while "watching" not in said[-1]:
        said.append(watch.stderr.readline())
        assert said[-1], "".join(said)
    assert "through the procobsrv service" in said[-1], said
    roots = run_children(f"root-{tag}", 10)
    mine = run_children(tag, 10, tuple(prefix))
    out, err = watch.communicate(timeout=30)
    assert watch.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    execs = {
        r["pid"]: r["command_line"] for r in records if r["kind"] == "exec" and r["pid"] in mine
    }
    assert execs == mine
    assert not {r.get("pid") for r in records} & set(roots)
    assert all(NOBODY in (r["uid"], r["euid"]) for r in records if r["kind"] != "lost")


def test_root_and_the_group_see_every_user_and_a_user_not_another(served: Served) -> None:
    """Raw clients: root, a member of --group (a supplementary group only), and uid OTHER,
    each told in the hello what it sees; then a child of NOBODY reaches the first two only."""
    member_prefix = [*as_user(OTHER)]
    member_prefix[member_prefix.index("--clear-groups")] = f"--groups={WATCHERS}"
    client = "from tests.fakes.service import first_of_tag; first_of_tag()"
    tag = f"group-{os.getpid()}"
    clients = {}
    for who, prefix in (("member", member_prefix), ("other", as_user(OTHER + 1))):
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-c", client, served.socket, tag],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        )
        assert proc.stdout is not None
        clients[who] = (proc, json.loads(proc.stdout.readline() or "null"))
    root = RawClient(served.socket)
    assert root.hello is not None and root.hello["sees"] == "all" and root.hello["uid"] == 0
    assert clients["member"][1]["sees"] == "all" and clients["member"][1]["uid"] == OTHER
    assert clients["other"][1]["sees"] == "own"
    run_children(tag, 1, tuple(as_user(NOBODY)))
    # the end marker, as OTHER + 1: the one child the "other" client may see
    subprocess.run([*as_user(OTHER + 1), "/bin/true", f"end-{tag}"], check=True)
    said = {who: proc.communicate(timeout=30)[0].strip() for who, (proc, _) in clients.items()}
    assert json.loads(said["member"]) == ["/bin/echo", tag, "0", "two words"]
    assert json.loads(said["other"]) == ["/bin/true", f"end-{tag}"]  # NOBODY's was not shown
    got = root.records_until(
        lambda r: r.get("command_line") == ["/bin/echo", tag, "0", "two words"]
    )
    assert got[-1]["uid"] == NOBODY
    root.close()


def test_trace_as_a_user_records_its_command_tree_through_the_service(served: Served) -> None:
    prefix = as_user(NOBODY)
    kernel_refuses_both(prefix)
    tag = f"trace-{os.getpid()}"
    traced = subprocess.run(
        [*prefix, *PROCOBSRV, "trace", "--", "sh", "-c", f"/bin/echo {tag} >/dev/null; exit 3"],
        capture_output=True,
        text=True,
        env=environment(served),
        timeout=60,
    )
    assert traced.returncode == 3, traced.stderr  # the command's own status
    assert "through the procobsrv service" in traced.stderr, traced.stderr
    assert f"└─ /bin/echo {tag}" in traced.stderr, traced.stderr


_PLUGIN_TEST = """
import subprocess

def test_spawns(spawned):
    subprocess.run(["/bin/echo", "TAG", "two words"], check=True)
    assert spawned.ran("/bin/echo", "TAG", "two words")
    (echo,) = spawned.find("/bin/echo")
    assert echo.status == 0
"""


def test_the_pytest_plugin_as_a_user_records_what_a_test_spawned_through_the_service(
    served: Served,
) -> None:
    prefix = as_user(NOBODY)
    kernel_refuses_both(prefix)
    tag = f"plugin-{os.getpid()}"
    with tempfile.TemporaryDirectory() as directory:  # under /tmp: the user may read it
        os.chmod(directory, 0o755)
        test_file = Path(directory) / "test_spawns.py"
        test_file.write_text(_PLUGIN_TEST.replace("TAG", tag))
        test_file.chmod(0o644)
        ran = subprocess.run(
            [*prefix, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file],
            capture_output=True,
            text=True,
            env=environment(served),
            cwd=directory,
            timeout=120,
        )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 passed" in ran.stdout, ran.stdout
