"""The "what you are seeing" text of each model: a markdown file per model key, next to this module.

``<key>.md`` is the model's own text; ``_<family>.md`` (when there is one) follows it in every model of
that family; a line ``{{include NAME}}`` takes the text of ``_NAME.md`` (a part several models share,
e.g. the GANs' R1 penalty). Adding a model to a family is its class plus its ``<key>.md``: the tabs
read the text from here, and a test holds that every registered model has one.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
INCLUDE = re.compile(r"^\{\{include ([a-z0-9_]+)\}\}$", re.MULTILINE)


class ExplainError(LookupError):
    pass


def _read(name: str) -> str:
    path = HERE / f"{name}.md"
    if not path.is_file():
        raise ExplainError(f"no explain text {path.name} in {HERE}")
    return path.read_text(encoding="utf-8").strip("\n")


@cache
def text(key: str, family: str) -> str:
    """The markdown shown under the plots for model `key` of `family` (raises ExplainError if the
    model has no file)."""
    body = INCLUDE.sub(lambda m: _read(f"_{m.group(1)}"), _read(key))
    common = HERE / f"_{family}.md"
    if common.is_file():
        body += "\n\n" + _read(f"_{family}")
    return body + "\n"


def has_text(key: str) -> bool:
    return (HERE / f"{key}.md").is_file()
