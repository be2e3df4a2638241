"""Import a fleet from a Slurm cluster's configuration and accounts.

- ``slurm.conf``: every ``NodeName`` with GPUs (``Gres=gpu[:type]:N``; ``NodeName=DEFAULT``
  lines apply to the lines after them) is a node; the GRES type names the GPU model;
- ``gres.conf`` (optional) gives the type where slurm.conf does not;
- ``topology.conf`` (optional): a ``BlockName`` is an NVLink domain; a leaf ``SwitchName``
  is a pod, its parent switch the site when that has a parent itself (the root is the fleet);
- ``sacctmgr show assoc -P`` output (optional): accounts are tenants and ``GrpTRES``
  ``gres/gpu[:type]=N`` their nominal quota, a parent's capping its subtree as in Slurm
  (:mod:`aifactory.interop.slurm_accounts` says how).

The node features ``class_<c>``, ``site_<s>``, ``pod_<s>.<p>`` and ``owner_<t>`` that
``export slurm`` writes are read first, so an exported fleet comes back as it was. Whatever
Slurm does not say (site power and PUE, owners) is an assumption, marked so.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from aifactory.fleet.errors import SpecError
from aifactory.fleet.spec import Fleet
from aifactory.interop.build import NodeRec, build_fleet, model_id
from aifactory.interop.hostlist import HostlistError, expand
from aifactory.interop.slurm_accounts import read_accounts

MAX_BYTES = 64 << 20


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SpecError([f"larger than {MAX_BYTES >> 20} MiB"], str(path))
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(["file not found"], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"cannot read ({exc})"], str(path)) from None


def conf_lines(text: str, source: str) -> list[tuple[int, dict[str, str]]]:
    """``(line number, {lower-case key: value})`` of a Slurm config file's lines."""
    out = []
    pending = ""
    start = 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not pending:
            start = no
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if not line:
            continue
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            raise SpecError([f"line {start}: {exc}"], source) from None
        params = {}
        for tok in tokens:
            key, eq, value = tok.partition("=")
            if eq:
                params[key.lower()] = value
        if params:
            out.append((start, params))
    return out


def _names(expr: str, where: str, source: str) -> list[str]:
    try:
        return expand(expr)
    except HostlistError as exc:
        raise SpecError([f"{where}: {exc}"], source) from None


def _gres_gpus(gres: str, where: str, source: str) -> tuple[str | None, int]:
    """(type, count) of the GPUs in a ``Gres=`` value; (None, 0) without GPUs."""
    kinds: set[str | None] = set()
    total = 0
    for item in gres.split(","):
        parts = item.split("(", 1)[0].split(":")
        if parts[0] != "gpu":
            continue
        count = parts[-1] if len(parts) > 1 else "1"
        if not count.isdigit() or len(count) > 6:
            raise SpecError([f"{where}: Gres '{item}': count is not a whole number"], source)
        kinds.add(parts[1] if len(parts) > 2 else None)
        total += int(count)
    if len(kinds) > 1:
        raise SpecError([f"{where}: Gres '{gres}': a node of several GPU types"], source)
    return (kinds.pop() if kinds else None), total


def import_slurm(
    conf: Path,
    *,
    gres: Path | None = None,
    topology: list[Path] | None = None,
    assoc: Path | None = None,
    gpu_model: str | None = None,
    name: str | None = None,
) -> Fleet:
    """The fleet of a Slurm cluster's configuration files (see the module doc)."""
    src = str(conf)
    notes: list[str] = []
    lines = conf_lines(_read(conf), src)
    cluster = next((p["clustername"] for _, p in lines if "clustername" in p), None)
    gres_type: dict[str, str] = {}
    if gres is not None:
        for no, p in conf_lines(_read(gres), str(gres)):
            if "nodename" in p and p.get("name") == "gpu" and p.get("type"):
                for n in _names(p["nodename"], f"line {no}: NodeName", str(gres)):
                    gres_type[n] = p["type"]
    domain_of: dict[str, str] = {}
    pod_of: dict[str, str] = {}
    site_of: dict[str, str] = {}
    for path in topology or []:  # a block file and a tree file may both be given
        d, p, s = _topology(path)
        domain_of.update(d)
        pod_of.update(p)
        site_of.update(s)
    nodes: list[NodeRec] = []
    guessed: dict[str, str] = {}
    defaults: dict[str, str] = {}
    for no, params in lines:
        if "nodename" not in params:
            continue
        if params["nodename"].upper() == "DEFAULT":
            defaults.update({k: v for k, v in params.items() if k != "nodename"})
            continue
        p = {**defaults, **params}
        where = f"line {no}: NodeName={p['nodename']}"
        kind, count = _gres_gpus(p.get("gres", ""), where, src)
        if count == 0:
            continue
        features = {
            f.split("_", 1)[0]: f.split("_", 1)[1]
            for f in (p.get("features") or p.get("feature") or "").split(",")
            if "_" in f
        }
        for node in _names(p["nodename"], where, src):
            raw = kind or gres_type.get(node) or gpu_model
            if raw is None:
                raise SpecError(
                    [f"{where}: GPUs of no type (Gres=gpu:N); name the model with --gpu-model"],
                    src,
                )
            model = model_id(raw)
            if model is None:
                raise SpecError([f"{where}: GPU type '{raw}' is not in the catalogue"], src)
            if model != raw.lower():
                guessed[raw] = model
            site = features.get("site") or site_of.get(node)
            pod = features.get("pod") or pod_of.get(node)
            if pod and site and pod.startswith(f"{site}."):
                pod = pod[len(site) + 1 :]
            nodes.append(
                NodeRec(
                    node,
                    count,
                    model,
                    features.get("class") or model,
                    features.get("owner"),
                    site,
                    pod,
                    domain_of.get(node),
                )
            )
    notes.extend(
        f"assumption: GPU type '{raw}' is the catalogue's '{model}'"
        for raw, model in guessed.items()
    )
    if gpu_model and any(n.model == model_id(gpu_model) for n in nodes):
        notes.append(f"assumption: GPUs without a GRES type are {gpu_model} (--gpu-model)")
    tenants = read_accounts(_read(assoc), str(assoc), nodes, notes) if assoc is not None else []
    return build_fleet(
        name or cluster or "slurm",
        nodes,
        tenants,
        source=f"Slurm configuration {src}",
        notes=notes,
        keep_node_names=True,
    )


def _topology(path: Path) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Node -> NVLink domain (block), pod (leaf switch) and site (the leaf's parent)."""
    domain: dict[str, str] = {}
    pod: dict[str, str] = {}
    site: dict[str, str] = {}
    src = str(path)
    parent: dict[str, str] = {}
    leaves: dict[str, list[str]] = {}
    for no, p in conf_lines(_read(path), src):
        if "blockname" in p:
            for n in _names(p.get("nodes", ""), f"line {no}: Nodes", src):
                domain[n] = p["blockname"]
        elif "switchname" in p:
            if "nodes" in p:
                leaves[p["switchname"]] = _names(p["nodes"], f"line {no}: Nodes", src)
            for child in _names(p.get("switches", ""), f"line {no}: Switches", src):
                parent[child] = p["switchname"]
    for leaf, members in leaves.items():
        up = parent.get(leaf)
        for n in members:
            pod[n] = leaf
            if up is not None and up in parent:
                site[n] = up
    for n, leaf in pod.items():  # the export names a pod's switch '<site>-<pod>'
        s = site.get(n)
        if s and leaf.startswith(f"{s}-"):
            pod[n] = leaf[len(s) + 1 :]
    return domain, pod, site
