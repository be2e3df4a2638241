"""Slurm hostlist expressions: ``gpu[000-017,020]`` <-> the node names they stand for.

Slurm's configuration files name node sets this way; a national fleet has ~60,000 nodes, so
the export writes ranges, and the import reads what a real ``slurm.conf`` holds (several
bracketed parts, lists inside brackets, zero padding). No library on PyPI is kept well enough
to depend on for forty lines.
"""

from __future__ import annotations

import re

_TAIL = re.compile(r"^(.*?)(\d+)$")
MAX_EXPANDED = 1_000_000  # a hostile '[0-999999999]' must not exhaust memory


class HostlistError(ValueError):
    """A malformed hostlist expression."""


def compress(names: list[str]) -> str:
    """A hostlist expression for ``names`` (order kept; runs of one prefix and width merged)."""
    parts: list[str] = []
    run: tuple[str, int, int, int] | None = None  # prefix, width, first, last

    def flush() -> None:
        if run is None:
            return
        prefix, width, first, last = run
        if first == last:
            parts.append(f"{prefix}{first:0{width}d}")
        else:
            parts.append(f"{prefix}[{first:0{width}d}-{last:0{width}d}]")

    for name in names:
        m = _TAIL.match(name)
        if m is None:
            flush()
            run = None
            parts.append(name)
            continue
        prefix, digits = m.group(1), m.group(2)
        n = int(digits)
        if run is not None and run[0] == prefix and run[1] == len(digits) and run[3] + 1 == n:
            run = (prefix, run[1], run[2], n)
            continue
        flush()
        run = (prefix, len(digits), n, n)
    flush()
    return _merge(parts)


def _merge(parts: list[str]) -> str:
    """Join ranges of one prefix into one bracket: ``a[0-3],a[5-7]`` -> ``a[0-3,5-7]``."""
    out: list[str] = []
    last_prefix: str | None = None
    for p in parts:
        if "[" in p and p.endswith("]"):
            prefix, body = p[: p.index("[")], p[p.index("[") + 1 : -1]
            if prefix == last_prefix and out and out[-1].endswith("]"):
                out[-1] = out[-1][:-1] + "," + body + "]"
                continue
            last_prefix = prefix
        else:
            last_prefix = None
        out.append(p)
    return ",".join(out)


def _split_top(expr: str) -> list[str]:
    items, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        if ch == "[":
            depth += 1
            if depth > 1:
                msg = f"'{expr}': nested brackets"
                raise HostlistError(msg)
        elif ch == "]":
            depth -= 1
            if depth < 0:
                msg = f"'{expr}': ']' without '['"
                raise HostlistError(msg)
        elif ch == "," and depth == 0:
            items.append(expr[start:i])
            start = i + 1
    if depth:
        msg = f"'{expr}': '[' without ']'"
        raise HostlistError(msg)
    items.append(expr[start:])
    return [s.strip() for s in items if s.strip()]


def _ranges(body: str, expr: str) -> list[str]:
    out: list[str] = []
    for part in body.split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            msg = f"'{expr}': bad range '{part}'"
            raise HostlistError(msg)
        first, last = int(lo), int(hi or lo)
        if last < first or last - first >= MAX_EXPANDED:
            msg = f"'{expr}': bad range '{part}'"
            raise HostlistError(msg)
        width = len(lo) if lo.startswith("0") else 0
        out.extend(f"{i:0{width}d}" for i in range(first, last + 1))
    return out


def expand(expr: str) -> list[str]:
    """The names of a hostlist expression, in order."""
    names: list[str] = []
    for item in _split_top(expr):
        _expand_item(item, expr, names)
    return names


def _expand_item(item: str, expr: str, names: list[str]) -> None:
    if "[" not in item:
        names.append(item)
        return
    head, rest = item.split("[", 1)
    body, tail = rest.split("]", 1)
    for r in _ranges(body, expr):
        if len(names) >= MAX_EXPANDED:
            msg = f"'{expr[:60]}': more than {MAX_EXPANDED} names"
            raise HostlistError(msg)
        if "[" in tail:
            _expand_item(f"{head}{r}{tail}", expr, names)
        else:
            names.append(f"{head}{r}{tail}")
