"""Node lists as Slurm's hostlists (``seoul/hgx/n[108-143]``), for squeue/sinfo-like views.

Node names here are ``site/pod/d<domain>/n<node>``; the node number alone identifies a node
in a fleet, so the domain part is left out of a list (``aifactory job show`` has the full
placement). Imports nothing heavy: the CLI uses it on every job listing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")
_DOMAIN = re.compile(r"/d\d+(?=/)")


def compress_nodes(names: Iterable[str]) -> str:
    """A hostlist: names that differ only in their last number become ``prefix[a-b,c]``."""
    groups: dict[tuple[str, str, int], list[int]] = {}
    plain: list[str] = []
    for raw in names:
        name = _DOMAIN.sub("", raw)
        m = _NUMBERED.match(name)
        if m is None:
            plain.append(name)
            continue
        prefix, digits, suffix = m.groups()
        width = len(digits) if digits.startswith("0") and len(digits) > 1 else 0
        groups.setdefault((prefix, suffix, width), []).append(int(digits))
    parts = sorted(set(plain))
    for (prefix, suffix, width), numbers in sorted(groups.items()):
        values = sorted(set(numbers))
        ranges: list[str] = []
        start = prev = values[0]
        for v in [*values[1:], None]:
            if v is not None and v == prev + 1:
                prev = v
                continue
            a, b = f"{start:0{width}d}", f"{prev:0{width}d}"
            ranges.append(a if start == prev else f"{a}-{b}")
            if v is not None:
                start = prev = v
        body = ranges[0] if len(values) == 1 else f"[{','.join(ranges)}]"
        parts.append(f"{prefix}{body}{suffix}")
    return ",".join(parts)
