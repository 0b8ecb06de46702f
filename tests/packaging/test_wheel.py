"""The wheel and sdist built from this tree: kernel binaries, LICENSE and py.typed in the
wheel, the sources to rebuild and test in the sdist, and a wheel that runs once installed."""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER_MANIFEST = ROOT / "src" / "procobsrv" / "windows" / "bin" / "ProcObsrv.sys.sha256"


def kernel_binaries() -> list[str]:
    """setup.py's KERNEL_BINARIES that apply to this tree (their sources are here)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "KERNEL_BINARIES":
            pairs: tuple[tuple[str, str], ...] = ast.literal_eval(node.value)
            return [binary for sources, binary in pairs if (ROOT / sources).is_dir()]
    raise AssertionError("setup.py has no KERNEL_BINARIES")


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(sdist, wheel): `python -m build` makes the sdist, then the wheel from the sdist."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    yield sdist, wheel


def test_committed_driver_matches_its_sources() -> None:
    """The committed ProcObsrv.sys was built from today's sources (`make driver` refreshes it;
    tests/driver/test_driver_pe.py rebuilds it and compares the bytes)."""
    for line in DRIVER_MANIFEST.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        actual = hashlib.sha256((ROOT / name).read_bytes()).hexdigest()
        assert actual == digest, f"{name} changed since ProcObsrv.sys was built: run `make driver`"


def test_wheel_carries_kernel_binaries_license_and_typing(dists: tuple[Path, Path]) -> None:
    names = set(zipfile.ZipFile(dists[1]).namelist())
    assert "procobsrv/windows/bin/ProcObsrv.sys" in kernel_binaries()
    for binary in kernel_binaries():
        assert binary in names, f"{binary} missing from the wheel"
    assert "procobsrv/py.typed" in names
    assert "procobsrv/agent/event.schema.json" in names  # what `procobsrv schema` prints
    assert any(".dist-info/" in n and n.endswith("/LICENSE") for n in names), sorted(names)


def test_sdist_carries_sources_to_rebuild_and_test(dists: tuple[Path, Path]) -> None:
    with tarfile.open(dists[0]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    wanted = {
        "LICENSE",
        "Makefile",
        "setup.py",
        "driver/ProcObsrv.c",
        "driver/GNUmakefile",
        "tests/conftest.py",
        "docs/index.md",
        "mkdocs.yml",
        "scripts/setup-system",
        "packaging/procobsrv.service",
        "src/procobsrv/windows/bin/ProcObsrv.sys",
    }
    assert wanted <= names, sorted(wanted - names)
    assert any(n.startswith("examples/") for n in names)
    if (ROOT / "bpf").is_dir():
        assert any(n.startswith("bpf/") for n in names)
    assert not any("__pycache__" in n or n.startswith("driver/out/") for n in names)


def test_build_refuses_a_wheel_without_the_driver(dists: tuple[Path, Path], tmp_path: Path) -> None:
    with tarfile.open(dists[0]) as sdist:
        sdist.extractall(tmp_path, filter="data")
    (tree,) = tmp_path.iterdir()
    (tree / "src/procobsrv/windows/bin/ProcObsrv.sys").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", "out", "."],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "kernel binaries missing from the package" in result.stdout + result.stderr


@pytest.mark.kernel
@pytest.mark.usefixtures("connector")
def test_installed_wheel_watches_with_no_other_step(
    dists: tuple[Path, Path], tmp_path: Path
) -> None:
    """A fresh venv, `pip install` of the wheel alone (no dependencies, no index), then
    `procobsrv watch` reports a marker child."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin/python"),
            "install",
            "-q",
            "--no-index",
            str(dists[1]),
        ],
        check=True,
        timeout=120,
    )
    watch = subprocess.Popen(
        [str(venv / "bin/procobsrv"), "watch", "--json", "--duration", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,  # not the source tree: the installed package must be the one imported
    )
    try:
        assert watch.stderr is not None
        assert "watching" in watch.stderr.readline()
        # alive for a while, so that its argv is read from /proc even on a loaded machine
        subprocess.run(["sh", "-c", "sleep 0.5; true", "wheel-marker"], check=True)
        out, err = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, err
    assert '"wheel-marker"' in out, out[-2000:]


#: What the build makes from the parser (scripts/cli_files.py), under the prefix's share/.
CLI_FILES = [
    "share/man/man1/procobsrv.1",
    "share/bash-completion/completions/procobsrv",
    "share/zsh/site-functions/_procobsrv",
    "share/fish/vendor_completions.d/procobsrv.fish",
]


def test_wheel_and_sdist_carry_the_man_page_and_completions(dists: tuple[Path, Path]) -> None:
    names = set(zipfile.ZipFile(dists[1]).namelist())
    for relative in CLI_FILES:
        assert f"procobsrv-0.1.0.data/data/{relative}" in names, sorted(names)
    assert "procobsrv/cli/timeline.html" in names  # what trace --html fills in
    with tarfile.open(dists[0]) as sdist:
        members = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {f"generated/{r}" for r in CLI_FILES} | {"scripts/cli_files.py"} <= members


#: The address the metadata once named for a repository that does not exist.
PLACEHOLDER_URL = "github.com/procobsrv/procobsrv"


def test_wheel_metadata_names_ebpf_and_the_pytest_plugin_and_no_invented_url(
    dists: tuple[Path, Path],
) -> None:
    """Project URLs go into the metadata once the project has a real public address; until
    then none (an invented one sends users to someone else's page, or to nothing)."""
    wheel = zipfile.ZipFile(dists[1])
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    text = wheel.read(metadata).decode()
    summary = next(line for line in text.splitlines() if line.startswith("Summary:"))
    assert "eBPF" in summary and "Windows kernel driver" in summary
    assert PLACEHOLDER_URL not in text, [
        line for line in text.splitlines() if line.startswith(("Home-page:", "Project-URL:"))
    ]
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert (
        "[pytest11]\nprocobsrv.pytest_plugin = procobsrv.pytest_plugin"
        in wheel.read(entry_points).decode()
    )
