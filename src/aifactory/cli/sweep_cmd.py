"""`aifactory sweep FILE`: every variation of a scenario x every seed, locally or on Ray."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aifactory.cli.common import check_out_dir, err, fail, out, user_errors

MAX_SEEDS = 1000
MAX_WORKERS = 1024


def sweep(
    scenario: Annotated[str, typer.Argument(help="Bundled scenario name or YAML path.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for sweep.parquet and .html.")],
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per variation.")] = 3,
    engine: Annotated[str, typer.Option("--engine", help="local (process pool) | ray")] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Ray cluster to join (ray.init address); default: "
            "start a local head with --workers CPUs.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Parallel runs: the local pool's processes, or the CPUs of the Ray head it "
            "starts (a cluster at --ray-address uses its own CPUs). Default: CPU count.",
        ),
    ] = None,
    keep_runs: Annotated[
        bool, typer.Option("--keep-runs", help="Also write each run's full outputs to OUT/runs/.")
    ] = False,
) -> None:
    """Run every variation x seed of a scenario; write sweep.parquet and sweep.html."""
    from aifactory.whatif.apply import check_scenario, load_scenario  # noqa: PLC0415
    from aifactory.whatif.engines import (  # noqa: PLC0415
        Engine,
        EngineError,
        order_rows,
        run_local,
        run_ray,
    )
    from aifactory.whatif.report import write_sweep  # noqa: PLC0415
    from aifactory.whatif.runner import tasks_for  # noqa: PLC0415

    if not 1 <= seeds <= MAX_SEEDS:
        fail(f"--seeds: must be between 1 and {MAX_SEEDS} (got {seeds})")
    k = workers if workers is not None else (os.cpu_count() or 1)
    if not 1 <= k <= MAX_WORKERS:
        fail(f"--workers: must be between 1 and {MAX_WORKERS} (got {k})")
    check_out_dir(out_dir)
    if engine not in {e.value for e in Engine}:
        fail(f"--engine: unknown '{engine}' (known: local, ray)")
    if ray_address is not None and engine != Engine.RAY:
        fail("--ray-address: only with --engine ray")
    with user_errors():
        spec, where = load_scenario(scenario)
        check_scenario(spec, where)
    keep = out_dir.resolve() / "runs" if keep_runs else None
    tasks = tasks_for(spec, where, seeds, keep)
    out.print(
        f"[bold]sweep[/] {spec.name}: {len(spec.run_names)} runs x {seeds} seed(s) = "
        f"{len(tasks)} on {engine} with {k} worker(s)"
    )
    started = time.perf_counter()
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        console=err,
    )
    with bar:
        job = bar.add_task("runs", total=len(tasks), last="")

        def on_row(row: dict[str, object]) -> None:
            mark = "" if row.get("status") == "ok" else " (error)"
            bar.update(job, advance=1, last=f"{row['variation']} seed {row['seed_index']}{mark}")

        try:
            if engine == Engine.RAY:
                rows = run_ray(tasks, k, ray_address, on_row)
            else:
                rows = run_local(tasks, k, on_row)
        except EngineError as exc:
            fail(str(exc))
    wall = time.perf_counter() - started
    rows = order_rows(rows, tasks)
    failed = [r for r in rows if r.get("status") != "ok"]
    meta = {
        "engine": engine,
        "workers": k,
        "wall": f"{wall:.1f} s",
        "runs per hour": f"{len(tasks) * 3600 / max(wall, 1e-9):,.0f}",
    }
    try:
        parquet, html = write_sweep(out_dir, spec, rows, seeds, meta)
    except OSError as exc:
        fail(f"--out: cannot write ({exc})")
    out.print(
        f"{len(rows) - len(failed)} of {len(rows)} runs ok in {wall:.1f} s "
        f"({meta['runs per hour']} runs/hour); {parquet}, {html}"
    )
    for r in failed:
        err.print(f"run {r['variation']} seed {r['seed_index']} failed: {r['error']}", markup=False)
    if failed:
        raise typer.Exit(1)
