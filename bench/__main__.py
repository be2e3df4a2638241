"""`make bench`: run every ``bench/bench_*.py`` module and print one table of figures.

Each module exposes ``run() -> list[dict]``; a row has ``name``, ``value``, ``unit`` and
optionally ``target`` (a human-readable bound) and ``ok`` (whether it is met). Figures
are also written to ``bench/results/results.json`` for the closing notes.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def main(argv: list[str]) -> int:
    """Run the selected (default: all) benchmark modules."""
    here = Path(__file__).parent
    sys.path.insert(0, str(here.parent))
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    wanted = [a for a in argv if not a.startswith("-")]
    if wanted:
        names = [n for n in names if any(w in n for w in wanted)]
    console = Console()
    rows: list[dict[str, Any]] = []
    for name in names:
        console.print(f"[bold]{name}[/] ...")
        t0 = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        got = module.run()
        for row in got:
            row.setdefault("bench", name)
        rows.extend(got)
        console.print(f"  done in {time.perf_counter() - t0:.1f} s")
    table = Table(title="aifactory benchmarks")
    for col in ("bench", "name", "value", "unit", "target", "ok"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for r in rows:
        value = r["value"]
        if isinstance(value, str):
            shown = value
        else:
            shown = f"{value:,.3g}" if isinstance(value, float) else f"{value:,}"
        ok = r.get("ok")
        mark = "" if ok is None else ("[green]yes[/]" if ok else "[red]no[/]")
        table.add_row(r["bench"], r["name"], shown, r.get("unit", ""), r.get("target", ""), mark)
    console.print(table)
    out = here / "results"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
