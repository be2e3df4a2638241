"""Import a fleet from a Slurm cluster's configuration and accounts.

- ``slurm.conf``: every ``NodeName`` with GPUs (``Gres=gpu[:type]:N``; ``NodeName=DEFAULT``
  lines apply to the lines after them) is a node; the GRES type names the GPU model;
- ``gres.conf`` (optional) gives the type where slurm.conf does not;
- ``topology.conf`` (optional): a ``BlockName`` is an NVLink domain; a leaf ``SwitchName``
  is a pod, its parent switch the site when that has a parent itself (the root is the fleet);
- ``sacctmgr show assoc -P`` output (optional): accounts are tenants (Slurm's ``root``
  account is the tree's root, not a tenant, unless it is the only one), ``GrpTRES``
  ``gres/gpu[:type]=N`` their nominal quota. Slurm has no cohorts: imported tenants borrow
  nothing and are held to their nominal quota, as GrpTRES holds them.

The node features ``class_<c>``, ``site_<s>``, ``pod_<s>.<p>`` and ``owner_<t>`` that
``export slurm`` writes are read first, so an exported fleet comes back as it was. Whatever
Slurm does not say (site power and PUE, owners) is an assumption, marked so.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from pathlib import Path

from aifactory.fleet.errors import SpecError
from aifactory.fleet.spec import ASSUMPTION, Fleet
from aifactory.interop.build import NodeRec, QuotaRec, TenantRec, build_fleet, model_id
from aifactory.interop.hostlist import HostlistError, expand

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
    tenants = _accounts(assoc, nodes, notes) if assoc is not None else []
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


def _accounts(path: Path, nodes: list[NodeRec], notes: list[str]) -> list[TenantRec]:
    """Tenants from ``sacctmgr show assoc -P`` (account rows: those without a user)."""
    src = str(path)
    rows = [r.split("|") for r in _read(path).splitlines() if r.strip()]
    if not rows:
        return []
    header = [h.strip().lower().replace(" ", "") for h in rows[0]]
    if "account" not in header:
        raise SpecError(["line 1: no 'Account' column (want `sacctmgr show assoc -P`)"], src)
    col = {h: i for i, h in enumerate(header)}
    parent_col = col.get("parentname", col.get("parname"))
    accounts: dict[str, tuple[str | None, str]] = {}
    for no, r in enumerate(rows[1:], 2):
        if len(r) != len(header):
            raise SpecError([f"line {no}: {len(r)} fields, the header has {len(header)}"], src)
        if "user" in col and r[col["user"]].strip():
            continue
        acct = r[col["account"]].strip()
        par = r[parent_col].strip() if parent_col is not None else ""
        tres = r[col["grptres"]].strip() if "grptres" in col else ""
        accounts.setdefault(acct, (par or None, tres))
    if len(accounts) > 1:
        accounts.pop("root", None)  # Slurm's root is the tree's root, not a tenant
    capacity: dict[str, int] = defaultdict(int)
    classes_of: dict[str, list[str]] = defaultdict(list)
    for n in nodes:
        capacity[n.gpu_class] += n.gpus
        if n.gpu_class not in classes_of[n.model]:
            classes_of[n.model].append(n.gpu_class)
    free = dict(capacity)
    has_children = {p for p, _ in accounts.values() if p}
    tenants = []
    clamped = False
    for acct, (up, grp) in accounts.items():
        tres = grp
        quotas: dict[str, int] = defaultdict(int)
        if acct in has_children and tres:
            notes.append(
                f"left out: GrpTRES of parent account {acct} (the twin's quotas do not nest)"
            )
            tres = ""
        for item in filter(None, tres.split(",")):
            key, _, value = item.partition("=")
            if not key.startswith("gres/gpu") or not value.isdigit():
                continue
            typed = key.partition(":")[2]
            if not typed and any(i.startswith("gres/gpu:") for i in tres.split(",")):
                continue  # the typed entries say more
            want = int(value)
            pool = classes_of.get(model_id(typed) or "", []) if typed else list(free)
            if want == 0 and typed and pool:
                quotas.setdefault(pool[0], 0)  # a class the account is allowed none of
            for cls in pool:
                take = min(want, free[cls])
                if take:
                    quotas[cls] += take
                    free[cls] -= take
                    want -= take
            clamped |= want > 0
        tenants.append(
            TenantRec(
                acct,
                parent=up if up in accounts else None,
                quotas=[QuotaRec(c, g, source="slurm: GrpTRES") for c, g in quotas.items()],
            )
        )
    _share_unlimited(tenants, accounts, has_children, free, notes)
    if clamped:
        notes.append(
            "approximation: GrpTRES beyond the GPUs not yet given to other accounts is left out"
        )
    if any(len(c) > 1 for c in classes_of.values()):
        notes.append(
            f"{ASSUMPTION}: a GrpTRES of a GPU type with several classes fills the classes in "
            "fleet order"
        )
    return tenants


UNLIMITED_COHORT = "slurm-unlimited"


def _share_unlimited(
    tenants: list[TenantRec],
    accounts: dict[str, tuple[str | None, str]],
    parents: set[str],
    free: dict[str, int],
    notes: list[str],
) -> None:
    """Leaf accounts without a GPU GrpTRES may use every GPU in Slurm. In the twin they
    split the GPUs no GrpTRES took, as nominal quotas, and share them in one cohort
    without a borrowing limit, so that each can still use all of them when the others
    are idle (an assumption, stated in the notes)."""
    open_ = [
        t
        for t in tenants
        if not t.quotas and t.name not in parents and "gres/gpu" not in accounts[t.name][1]
    ]
    if not open_ or not any(free.values()):
        return
    for cls, gpus in free.items():
        share, extra = divmod(gpus, len(open_))
        for i, t in enumerate(open_):
            t.quotas.append(
                QuotaRec(
                    cls,
                    share + (1 if i < extra else 0),
                    source="assumption: no GrpTRES in Slurm; an equal share of the free GPUs",
                )
            )
    for t in open_:
        t.cohort = UNLIMITED_COHORT if len(open_) > 1 else None
    names = ", ".join(t.name for t in open_)
    notes.append(
        f"assumption: accounts without a GPU GrpTRES ({names}) split the GPUs no GrpTRES "
        f"holds as nominal quotas"
        + (
            f", in cohort '{UNLIMITED_COHORT}' to use each other's idle GPUs"
            if len(open_) > 1
            else ""
        )
    )
