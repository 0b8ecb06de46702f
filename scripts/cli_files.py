#!/usr/bin/env python3
"""Writes what the package installs beside the command, made from its argparse parser at
build time (setup.py runs this): the man page and the bash, zsh and fish completions.

    python scripts/cli_files.py OUTDIR

OUTDIR gets share/man/man1/procobsrv.1, share/bash-completion/completions/procobsrv,
share/zsh/site-functions/_procobsrv and share/fish/vendor_completions.d/procobsrv.fish:
the places each tool looks under an installation prefix (/usr/local, a venv).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where each file goes under the prefix, and the shell shtab writes it for (None: man page).
FILES = {
    "share/man/man1/procobsrv.1": None,
    "share/bash-completion/completions/procobsrv": "bash",
    "share/zsh/site-functions/_procobsrv": "zsh",
    "share/fish/vendor_completions.d/procobsrv.fish": "fish",
}


def build_date() -> str:
    """The page's date: SOURCE_DATE_EPOCH's when set (reproducible builds), else today."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return time.strftime("%Y-%m-%d", time.gmtime(int(epoch) if epoch else None))


def write(outdir: Path) -> list[Path]:
    sys.path.insert(0, str(ROOT / "src"))
    try:
        import shtab
    except ModuleNotFoundError:
        raise SystemExit(
            "building procobsrv needs shtab (shell completion from the parser): pip install shtab"
        ) from None
    from procobsrv import __version__
    from procobsrv.cli.main import build_parser
    from procobsrv.cli.manpage import man_page

    parser = build_parser()
    written = []
    for relative, shell in FILES.items():
        text = (
            man_page(parser, __version__, build_date())
            if shell is None
            else shtab.complete(parser, shell)
        )
        path = outdir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1])):
        print(path)
