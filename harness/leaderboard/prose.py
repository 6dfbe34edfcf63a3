"""The pages' prose, kept as Jinja2 templates in ``templates/`` (one file per page or
part of a page, one macro per paragraph), so that what a page says reads as text and the
code only decides which paragraph goes where.

A macro is written wrapped for reading. :func:`paragraphs` renders it and joins the lines
of each paragraph with single spaces (every paragraph of a generated page is one line of
markdown), so the template's line breaks never reach a page; a blank line in a macro
separates two paragraphs.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jinja2

_BLANK_LINE = re.compile(r"\n[ \t]*\n")


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    """The templates' environment: plain text (no HTML escaping), an undefined name is an
    error rather than an empty string, block tags leave no blank lines behind."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("harness.leaderboard", "templates"),
                             keep_trailing_newline=True, autoescape=False,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["commas"] = lambda n: f"{n:,}"
    return env


def paragraphs(template: str, macro: str, **values: Any) -> list[str]:
    """The paragraphs ``macro`` of ``templates/<template>`` renders with ``values``, each
    as one line."""
    text = str(getattr(environment().get_template(template).module, macro)(**values))
    blocks = _BLANK_LINE.split(text.strip())
    return [" ".join(line.strip() for line in block.splitlines() if line.strip())
            for block in blocks if block.strip()]


def say(template: str, macro: str, **values: Any) -> str:
    """The one paragraph ``macro`` of ``templates/<template>`` renders, as one line."""
    (text,) = paragraphs(template, macro, **values)
    return text
