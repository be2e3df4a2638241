"""`aifactory import slurm|kueue ... --out fleet.yaml`: a twin of an existing cluster."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aifactory.cli.common import fail, out, user_errors

if TYPE_CHECKING:
    from aifactory.fleet import Fleet

app = typer.Typer(help="Read a Slurm or Kueue cluster's configuration into a fleet file.")

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Fleet YAML file to write.")]
NameOpt = Annotated[str | None, typer.Option("--name", help="Fleet name (default: the cluster's).")]


def _write(fleet: Fleet, path: Path) -> None:
    import yaml  # noqa: PLC0415

    doc = fleet.model_dump(mode="json", exclude_defaults=True)
    text = f"# Imported by `aifactory import`: {fleet.description}\n" + yaml.safe_dump(
        doc, sort_keys=False, allow_unicode=True, width=100
    )
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"--out: cannot write {path} ({exc.strerror or exc})")
    from aifactory.fleet import compile_topology  # noqa: PLC0415

    gpus = compile_topology(fleet).gpus_total
    tenants = sum(1 for _ in fleet.iter_tenants())
    out.print(
        f"wrote {path}: {gpus:,} GPUs in {len(fleet.sites)} sites, {tenants} tenants", markup=False
    )
    for note in fleet.notes:
        out.print(f"  note: {note}", markup=False, soft_wrap=True)


@app.command("slurm")
def slurm_cmd(
    conf: Annotated[Path, typer.Option("--conf", help="The cluster's slurm.conf.")],
    out_path: OutOpt,
    gres: Annotated[Path | None, typer.Option("--gres", help="gres.conf (GPU types).")] = None,
    topology: Annotated[
        list[Path] | None,
        typer.Option("--topology", help="topology.conf (block and/or tree); may be repeated."),
    ] = None,
    assoc: Annotated[
        Path | None,
        typer.Option(
            "--assoc",
            help="Output of `sacctmgr show assoc -P format=Account,User,ParentName,GrpTRES`.",
        ),
    ] = None,
    gpu_model: Annotated[
        str | None,
        typer.Option("--gpu-model", help="Model of GPUs without a GRES type, e.g. h100."),
    ] = None,
    name: NameOpt = None,
) -> None:
    """Nodes, GPUs and models; blocks and switches as domains, pods and sites; accounts as
    tenants with GrpTRES as nominal quota. What Slurm does not say is marked assumption."""
    from aifactory.interop.slurm_import import import_slurm  # noqa: PLC0415

    with user_errors():
        fleet = import_slurm(
            conf, gres=gres, topology=topology, assoc=assoc, gpu_model=gpu_model, name=name
        )
    _write(fleet, out_path)


@app.command("kueue")
def kueue_cmd(
    manifests: Annotated[
        list[Path],
        typer.Argument(help="Kueue manifests (ClusterQueue, Cohort, ResourceFlavor, Topology)."),
    ],
    nodes: Annotated[
        Path, typer.Option("--nodes", help="`kubectl get nodes -o yaml` (or -o json) output.")
    ],
    out_path: OutOpt,
    name: NameOpt = None,
) -> None:
    """ClusterQueues as tenants with their quotas, Cohorts as cohorts, flavors as GPU
    classes, the nodes into the Topology's sites, pods and NVLink domains."""
    from aifactory.interop.kueue_import import import_kueue  # noqa: PLC0415

    with user_errors():
        fleet = import_kueue(manifests, nodes, name=name)
    _write(fleet, out_path)
