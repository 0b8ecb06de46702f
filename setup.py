"""Build hooks: refuse a wheel that lacks a kernel binary whose sources are in the tree, and
make the man page and the shell completions from the argparse parser (scripts/cli_files.py).

Everything else is declared in setup.cfg. The binaries are committed (as the article shipped
its compiled driver); CI checks that they match their sources (tests/packaging).
"""

import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
#: (folder of the kernel program's sources, the compiled file the package must carry)
KERNEL_BINARIES = (
    ("driver", "procobsrv/windows/bin/ProcObsrv.sys"),
    ("bpf", "procobsrv/linux/bpf/procobsrv.bpf.o"),
)


class BuildPyWithKernelBinaries(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        # An editable install serves package data from src/, so that is where to look.
        built = HERE / "src" if getattr(self, "editable_mode", False) else Path(self.build_lib)
        missing = [
            binary
            for sources, binary in KERNEL_BINARIES
            if (HERE / sources).is_dir() and not (built / binary).is_file()
        ]
        if missing:
            raise SystemExit(
                f"kernel binaries missing from the package: {', '.join(missing)}; "
                "build them (make driver / make -C bpf) and commit them"
            )


#: Made at each build, never committed (.gitignore): they cannot drift from the parser.
GENERATED = "generated"


def cli_files() -> list[tuple[str, list[str]]]:
    """The man page and completions, as data_files (installed under the prefix's share/)."""
    script = HERE / "scripts" / "cli_files.py"
    if not script.is_file():  # a tree without the script: nothing to make
        return []
    made = subprocess.run(
        [sys.executable, str(script), str(HERE / GENERATED)], capture_output=True, text=True
    )
    if made.returncode != 0:
        raise SystemExit(f"making the man page and completions failed: {made.stderr.strip()}")
    files = [Path(p).relative_to(HERE) for p in made.stdout.split()]
    return [(str(f.parent.relative_to(GENERATED)), [str(f)]) for f in files]


setup(cmdclass={"build_py": BuildPyWithKernelBinaries}, data_files=cli_files())
