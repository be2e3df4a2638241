"""Turning validation failures into messages a person can act on.

Every problem is reported as ``path: problem`` where the path is the place in the
YAML document (``sites[2].pods[0].groups[0].domains: must be > 0``), so a user with a
2,000-line fleet file can go straight to the line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: the CLI imports SpecError on every start, pydantic lazily
    from pydantic import ValidationError
    from pydantic_core import ErrorDetails

_SUBPATH = re.compile(
    r"^((?:\[\d+\])?[A-Za-z_][\w]*(?:\[\d+\])*(?:\.[A-Za-z_]\w*(?:\[\d+\])*)*|\[\d+\](?:\.\w+)?): "
)


class SpecError(ValueError):
    """A spec (fleet, job, workload) failed validation; ``problems`` are ``path: problem``."""

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "; ".join(self.problems))


def format_path(loc: Sequence[int | str]) -> str:
    """Render a pydantic location tuple as ``a.b[2].c``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = part
    return out


def _message(err: ErrorDetails) -> str:
    kind = err["type"]
    # Bounds of float fields come as 0.0; show them as the user would write them (> 0).
    ctx = {
        k: int(v) if isinstance(v, float) and v.is_integer() else v
        for k, v in (err.get("ctx") or {}).items()
    }
    simple = {
        "greater_than": "must be > {gt}",
        "greater_than_equal": "must be >= {ge}",
        "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}",
        "missing": "is required",
        "extra_forbidden": "unknown field",
        "too_short": "must have at least {min_length} item(s)",
        "string_too_short": "must not be empty",
        "string_pattern_mismatch": "must be a lower-case identifier (a-z, 0-9, '.', '_', '-')",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "int_from_float": "must be a whole number",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "string_type": "must be a string",
        "list_type": "must be a list",
        "dict_type": "must be a mapping",
        "model_type": "must be a mapping",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "enum": "must be one of {expected}",
        "literal_error": "must be one of {expected}",
    }
    template = simple.get(kind)
    if template is not None:
        try:
            return template.format(**ctx)
        except (KeyError, IndexError):
            return template
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def problems_from(exc: ValidationError) -> list[str]:
    """All problems of a pydantic error as ``path: problem`` strings."""
    out: list[str] = []
    for err in exc.errors():
        path = format_path([p for p in err["loc"] if not _is_union_tag(p)])
        msg = _message(err)
        sub = _SUBPATH.match(msg)
        if err["type"] == "value_error" and sub:
            tail = sub.group(1)
            joiner = "" if tail.startswith("[") or not path else "."
            path = f"{path}{joiner}{tail}"
            msg = msg[sub.end() :]
        out.append(f"{path}: {msg}" if path else msg)
    return out


def _is_union_tag(part: int | str) -> bool:
    # pydantic inserts the member type name for unions ("function-after[...]"); hide it.
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))
