"""The man page and the shell completions, made from the parser as the build makes them
(scripts/cli_files.py), loaded by the real man, bash, zsh and fish; and --help's examples."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from procobsrv.cli.main import build_parser
from tests.fakes.availability import require_tool

ROOT = Path(__file__).resolve().parents[2]
TOOL = [sys.executable, "-m", "procobsrv"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-files")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cli_files.py"), str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out / "share"


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_man_page_renders_without_warnings_and_lists_every_option(made: Path) -> None:
    require_tool("man")
    page = made / "man/man1/procobsrv.1"
    shown = subprocess.run(
        ["man", "--warnings", "-l", str(page)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "100", "LANG": "C.UTF-8"},
        timeout=60,
    )
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    text = re.sub(".\b", "", shown.stdout)  # bold and underline are overstruck when piped
    for name, sub in commands().items():
        assert f"procobsrv {name}" in text
        for action in sub._actions:
            for option in action.option_strings:
                assert option in text, (name, option)
    assert "examples:" in text and "procobsrv trace -- make -j2" in text
    assert "EXIT STATUS" in text


def test_bash_completes_commands_options_and_choices(made: Path) -> None:
    script = made / "bash-completion/completions/procobsrv"

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        run = subprocess.run(
            [
                "bash",
                "-c",
                f'source "$0"; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; '
                '_shtab_procobsrv; printf "%s\\n" "${COMPREPLY[@]}"',
                str(script),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.split()

    assert complete("procobsrv", "tr") == ["trace"]
    assert set(commands()) <= set(complete("procobsrv", ""))
    assert "--format" in complete("procobsrv", "watch", "--fo")
    assert complete("procobsrv", "watch", "--format", "") == ["text", "json", "ecs", "otel"]


def test_fish_completes_commands_and_choices(made: Path) -> None:
    require_tool("fish")
    script = made / "fish/vendor_completions.d/procobsrv.fish"
    run = subprocess.run(
        [
            "fish",
            "--no-config",
            "-c",
            f"source {script}; complete -C 'procobsrv wa'; "
            "complete -C 'procobsrv collect --format '",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    offered = [line.split("\t")[0] for line in run.stdout.splitlines()]
    assert offered == ["watch", "json", "ecs", "otel"], run.stdout


def test_zsh_takes_the_completion_for_procobsrv(made: Path, tmp_path: Path) -> None:
    require_tool("zsh")
    functions = made / "zsh/site-functions"
    run = subprocess.run(
        [
            "zsh",
            "-fc",
            f"fpath=({functions} $fpath); autoload -Uz compinit && compinit -u -D; "
            "print -r -- ${_comps[procobsrv]}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "_procobsrv"
    syntax = subprocess.run(["zsh", "-n", str(functions / "_procobsrv")], capture_output=True)
    assert syntax.returncode == 0, syntax.stderr


@pytest.mark.parametrize("command", [[], ["watch"], ["trace"], ["collect"]])
def test_help_shows_examples(command: list[str]) -> None:
    run = subprocess.run([*TOOL, *command, "--help"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0
    examples = run.stdout[run.stdout.index("examples:") :]
    assert examples.count("procobsrv ") >= 2, run.stdout
