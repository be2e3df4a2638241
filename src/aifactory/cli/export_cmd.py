"""`aifactory export slurm|kueue FLEET --out DIR`: a fleet as production configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aifactory.cli.common import fail, out, user_errors

app = typer.Typer(
    help="Write a fleet's nodes, topology, tenants and quotas as Slurm or Kueue config."
)

FleetArg = Annotated[str, typer.Argument(help="Bundled fleet name or path to a YAML file.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Directory to write the files into.")]


def _written(out_dir: Path, names: list[str]) -> None:
    for name in names:
        out.print(f"wrote {out_dir / name}", markup=False)


@app.command("kueue")
def kueue_cmd(
    fleet: FleetArg,
    out_dir: OutOpt,
    no_preemption: Annotated[
        bool,
        typer.Option("--no-preemption", help="As the twin's --no-preemption: queues never evict."),
    ] = False,
) -> None:
    """Kueue v1beta2: ResourceFlavors, Topology, Cohorts, ClusterQueues, LocalQueues,
    WorkloadPriorityClasses (kueue.yaml) and the labelled nodes (nodes.json)."""
    from aifactory.fleet import load_fleet  # noqa: PLC0415 (CLI start-up stays light)
    from aifactory.interop.kueue_export import write_kueue  # noqa: PLC0415
    from aifactory.interop.layout import ExportError  # noqa: PLC0415

    with user_errors():
        spec = load_fleet(fleet)
    try:
        names = write_kueue(spec, out_dir, preemption=not no_preemption)
    except ExportError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"--out: cannot write {out_dir} ({exc.strerror or exc})")
    _written(out_dir, names)


@app.command("slurm")
def slurm_cmd(
    fleet: FleetArg,
    out_dir: OutOpt,
    partitions: Annotated[
        str, typer.Option("--partitions", help="One partition per GPU 'class' or per 'site'.")
    ] = "class",
    topology: Annotated[
        str,
        typer.Option(
            "--topology",
            help="Plugin slurm.conf selects: 'block' (NVLink domains, Slurm >= 23.11) or "
            "'tree' (pods and sites as switches); both files are written.",
        ),
    ] = "block",
) -> None:
    """Slurm: slurm.conf lines, gres.conf, topology.conf (block and tree), accounts.sh."""
    from aifactory.fleet import load_fleet  # noqa: PLC0415
    from aifactory.interop.layout import ExportError  # noqa: PLC0415
    from aifactory.interop.slurm_export import write_slurm  # noqa: PLC0415

    if partitions not in {"class", "site"}:
        fail(f"--partitions: '{partitions}' is not class or site")
    with user_errors():
        spec = load_fleet(fleet)
    try:
        names = write_slurm(
            spec,
            out_dir,
            partitions="site" if partitions == "site" else "class",
            plugin=topology,
        )
    except ExportError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"--out: cannot write {out_dir} ({exc.strerror or exc})")
    _written(out_dir, names)
