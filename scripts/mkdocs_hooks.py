"""mkdocs hook (mkdocs.yml ``hooks:``): show Sphinx cross-reference roles in docstrings as code.

The docstrings use reST roles (:class:`Platform`); mkdocstrings renders the backquoted part
as code and would leave the role's name in front of it.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const):<code>~?")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub("<code>", html)
