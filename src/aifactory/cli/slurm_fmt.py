"""Slurm's notations, so operators read and type what they know from squeue and sbatch.

- Time limits as ``sbatch --time`` takes them: ``M``, ``M:S``, ``H:M:S``, ``D-H``,
  ``D-H:M``, ``D-H:M:S`` (a bare number is minutes); shown as squeue shows them
  (``D-HH:MM:SS``, ``HH:MM:SS`` under a day, ``M:SS`` under an hour).
- Node lists compressed as Slurm's hostlists: ``seoul/hgx/n[108-143]``
  (:func:`aifactory.fleet.hostlist.compress_nodes`, which the API uses too).
- Batch scripts with ``#AIF`` directive lines, as ``#SBATCH`` lines: options read up to
  the first line that is neither a comment nor blank, the script itself is the command.
"""

from __future__ import annotations

import re
import shlex

from aifactory.fleet.hostlist import compress_nodes

__all__ = ["compress_nodes", "format_duration", "parse_time_limit", "script_directives"]

MAX_TIME_LIMIT_S = 365 * 86_400  # far above any service's limit; the service bounds it too
MAX_SCRIPT_BYTES = 16_384  # the API's bound on a command

_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_time_limit(text: str) -> float:
    """Seconds of a Slurm time limit; ValueError naming the accepted forms otherwise."""
    m = _TIME.match(text.strip())
    if m is None:
        msg = f"'{text}' is not a time limit (use minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S)"
        raise ValueError(msg)
    days, a, b, c = m.groups()
    if days is None:
        # M, M:S or H:M:S
        parts = [int(a)] + [int(x) for x in (b, c) if x is not None]
        if len(parts) == 1:
            seconds = parts[0] * 60
        elif len(parts) == 2:
            seconds = parts[0] * 60 + parts[1]
        else:
            seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    else:
        # D-H, D-H:M or D-H:M:S
        seconds = int(days) * 86_400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    if seconds <= 0:
        msg = f"'{text}' is not a positive time limit"
        raise ValueError(msg)
    if seconds > MAX_TIME_LIMIT_S:
        msg = f"'{text}' is more than {MAX_TIME_LIMIT_S // 86_400} days"
        raise ValueError(msg)
    return float(seconds)


def format_duration(seconds: float | None) -> str:
    """As squeue's TIME and TIME_LIMIT columns: ``D-HH:MM:SS``, ``H:MM:SS``, ``M:SS``."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{s:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{s:02d}"
    return f"{minutes}:{s:02d}"


def script_directives(text: str, prefix: str = "#AIF") -> list[str]:
    """The options of a script's directive lines, in order (``#AIF --gpus 8`` gives
    ``["--gpus", "8"]``), read as sbatch reads ``#SBATCH``: up to the first line that is
    neither blank nor a comment. ValueError names the line of a directive that cannot be
    split (an unclosed quote)."""
    args: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        head, _, rest = stripped.partition(" ")
        if head != prefix:
            continue
        try:
            args.extend(shlex.split(rest, comments=True))
        except ValueError as exc:
            msg = f"line {number}: {exc}"
            raise ValueError(msg) from None
    return args
