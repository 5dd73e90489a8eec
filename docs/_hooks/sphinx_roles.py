"""mkdocs hook: show the docstrings' Sphinx roles (``:func:`~a.b.c```) as plain code (``c``).

The package's docstrings are numpy style and cross-reference with Sphinx roles, which
mkdocstrings leaves as text (":func:" before the code span).  A leading ``~`` keeps the last
component only, as Sphinx does.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj|math|ref):<code>(~?)([^<]*)</code>")


def _plain(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(_plain, html)
