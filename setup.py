"""Build hook: refuse a wheel that lacks a kernel binary whose sources are in the tree.

Everything else is declared in setup.cfg. The binaries are committed (as the article shipped
its compiled driver); CI checks that they match their sources (tests/packaging).
"""

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


setup(cmdclass={"build_py": BuildPyWithKernelBinaries})
