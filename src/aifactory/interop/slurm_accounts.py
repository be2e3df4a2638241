"""Tenants and their quotas from ``sacctmgr show assoc -P`` (account rows: those without a user).

Decides how Slurm's account tree and its ``GrpTRES`` limits become the twin's tenant tree
and nominal quotas. Accounts are tenants; Slurm's ``root`` account is the tree's root, not
a tenant (unless it is the only one). A ``GrpTRES`` of ``gres/gpu[:type]=N`` caps what an
account's whole subtree may hold at once, which is what a parent's nominal quota means in
the twin (aifactory/fleet/spec.py ``Tenant``): a leaf's becomes its nominal quota, a
parent's its own quota over its children's. Slurm guarantees nothing and has no cohorts,
so imported tenants with a ``GrpTRES`` borrow nothing and are held to it, as Slurm holds
them. Every figure that Slurm does not say is an assumption written to the fleet's notes:

- GPUs are given out in the order the accounts are listed, leaves first and each parent
  after its subtree, a class at a time in fleet order; a limit beyond the GPUs left is cut
  (Slurm may oversubscribe; the twin's nominal quotas are capacity it holds);
- a parent whose ``GrpTRES`` is below what its children's limits add up to caps them all:
  its descendants' quotas of those classes are scaled down to fit it (rounded down, so
  every subtree still fits its parent), and the GPUs freed go back to the pool;
- a parent whose limit is above its children's sum holds the rest itself, room its
  children share (they borrow from their siblings first: aifactory/scheduler/quota.py);
- an account without a GPU ``GrpTRES`` may use every GPU Slurm lets its subtree use: the
  children of a capped parent without a limit of their own split the parent's room
  equally; the others split the GPUs no limit took, in one cohort without a borrowing
  limit so that each can use all of them when the others are idle.
"""

from __future__ import annotations

from collections import defaultdict

from aifactory.fleet.errors import SpecError
from aifactory.fleet.spec import ASSUMPTION
from aifactory.interop.build import NodeRec, QuotaRec, TenantRec, model_id

UNLIMITED_COHORT = "slurm-unlimited"
GRPTRES = "slurm: GrpTRES"

#: One limit of an account: the classes it covers, in fleet order, and its GPUs.
Want = tuple[list[str], int]


def read_accounts(
    text: str, source: str, nodes: list[NodeRec], notes: list[str]
) -> list[TenantRec]:
    """The tenants of an assoc listing ``text`` (from ``source``) over ``nodes``."""
    rows = [r.split("|") for r in text.splitlines() if r.strip()]
    if not rows:
        return []
    header = [h.strip().lower().replace(" ", "") for h in rows[0]]
    if "account" not in header:
        raise SpecError(["line 1: no 'Account' column (want `sacctmgr show assoc -P`)"], source)
    col = {h: i for i, h in enumerate(header)}
    parent_col = col.get("parentname", col.get("parname"))
    accounts: dict[str, tuple[str | None, str]] = {}
    for no, r in enumerate(rows[1:], 2):
        if len(r) != len(header):
            raise SpecError([f"line {no}: {len(r)} fields, the header has {len(header)}"], source)
        if "user" in col and r[col["user"]].strip():
            continue
        acct = r[col["account"]].strip()
        par = r[parent_col].strip() if parent_col is not None else ""
        tres = r[col["grptres"]].strip() if "grptres" in col else ""
        accounts.setdefault(acct, (par or None, tres))
    if len(accounts) > 1:
        accounts.pop("root", None)  # Slurm's root is the tree's root, not a tenant
    return _Tree(accounts, nodes, notes).tenants()


def _wants(tres: str, classes_of: dict[str, list[str]], all_classes: list[str]) -> list[Want]:
    """The GPU limits of a ``GrpTRES`` value: typed entries (``gres/gpu:h100=8``) cover
    their model's classes; an untyped one covers every class, unless typed ones say more."""
    items = [i.partition("=") for i in filter(None, tres.split(","))]
    gpu = [(k, v) for k, _, v in items if k.startswith("gres/gpu") and v.isdigit()]
    typed = any(k.startswith("gres/gpu:") for k, _ in gpu)
    out: list[Want] = []
    for key, value in gpu:
        model = key.partition(":")[2]
        if not model and typed:
            continue  # the typed entries say more
        pool = classes_of.get(model_id(model) or "", []) if model else list(all_classes)
        out.append((pool, int(value)))
    return out


class _Tree:
    """The accounts as a tree, and the GPUs each is given (see the module)."""

    def __init__(
        self,
        accounts: dict[str, tuple[str | None, str]],
        nodes: list[NodeRec],
        notes: list[str],
    ) -> None:
        self.accounts = accounts
        self.notes = notes
        capacity: dict[str, int] = defaultdict(int)
        self.classes_of: dict[str, list[str]] = defaultdict(list)
        for n in nodes:
            capacity[n.gpu_class] += n.gpus
            if n.gpu_class not in self.classes_of[n.model]:
                self.classes_of[n.model].append(n.gpu_class)
        self.classes = list(capacity)
        self.free = dict(capacity)
        self.children: dict[str, list[str]] = defaultdict(list)
        for acct, (up, _) in accounts.items():
            if up in accounts:
                self.children[up].append(acct)
        self.quotas: dict[str, dict[str, int]] = {a: {} for a in accounts}
        self.capped: set[str] = set()  # accounts with a GPU limit of their own
        self.clamped = False
        self.scaled: list[str] = []

    def _limits(self, acct: str) -> list[Want] | None:
        tres = self.accounts[acct][1]
        if "gres/gpu" not in tres:
            return None
        return _wants(tres, self.classes_of, self.classes)

    def _take(self, acct: str, pool: list[str], want: int) -> None:
        """Give ``acct`` up to ``want`` more GPUs of ``pool``'s classes from the free ones."""
        mine = self.quotas[acct]
        if want == 0 and pool:
            mine.setdefault(pool[0], 0)  # a class the account is allowed none of
        for cls in pool:
            take = min(want, self.free[cls])
            if take:
                mine[cls] = mine.get(cls, 0) + take
                self.free[cls] -= take
                want -= take
        self.clamped |= want > 0

    def _held(self, acct: str, cls: str) -> int:
        """GPUs of ``cls`` that ``acct``'s subtree holds: its own quota, which holds its
        children's, or for an account without one, its children's sum."""
        own = self.quotas[acct].get(cls)
        return own if own is not None else self._subtree(acct, cls)

    def _subtree(self, acct: str, cls: str) -> int:
        """GPUs of ``cls`` that the children of ``acct`` hold."""
        return sum(self._held(c, cls) for c in self.children[acct])

    def _scale(self, acct: str, cls: str, factor: float, *, refund: bool = True) -> None:
        """Scale the quotas of ``cls`` under ``acct`` by ``factor`` < 1, rounding down (so
        a subtree's sum stays within its parent's). The GPUs a branch's topmost quota
        gives up go back to the pool; those below it were inside it."""
        for child in self.children[acct]:
            had = self.quotas[child].get(cls)
            if had is None:
                self._scale(child, cls, factor, refund=refund)
                continue
            now = int(had * factor)
            self.quotas[child][cls] = now
            if refund:
                self.free[cls] += had - now
            self._scale(child, cls, factor, refund=False)

    def _parent(self, acct: str, limits: list[Want]) -> None:
        """A capped parent: its own quota per class, over its children's."""
        for pool, cap in limits:
            held = {cls: self._subtree(acct, cls) for cls in pool}
            total = sum(held.values())
            if total > cap:
                factor = cap / total
                for cls in pool:
                    self._scale(acct, cls, factor)
                held = {cls: self._subtree(acct, cls) for cls in pool}
                self.scaled.append(acct)
            for cls, gpus in held.items():
                if gpus:
                    self.quotas[acct][cls] = self.quotas[acct].get(cls, 0) + gpus
            self._take(acct, pool, cap - sum(held.values()))

    def _post_order(self) -> list[str]:
        """Every account, each after its children, roots in listing order."""
        out: list[str] = []

        def walk(acct: str) -> None:
            for child in self.children[acct]:
                walk(child)
            out.append(acct)

        for acct, (up, _) in self.accounts.items():
            if up not in self.accounts:
                walk(acct)
        return out

    def tenants(self) -> list[TenantRec]:
        """The tenant records, with their quotas and the notes on what was assumed."""
        leaves = [a for a in self.accounts if not self.children[a]]
        for acct in leaves:  # in listing order, as Slurm lists them
            limits = self._limits(acct)
            if limits is not None:
                self.capped.add(acct)
                for pool, want in limits:
                    self._take(acct, pool, want)
        for acct in self._post_order():
            limits = self._limits(acct)
            if self.children[acct] and limits is not None:
                self.capped.add(acct)
                self._parent(acct, limits)
        shared = self._share_rooms()
        self._share_free([a for a in leaves if a not in self.capped and a not in shared])
        if self.clamped:
            self.notes.append(
                "approximation: GrpTRES beyond the GPUs not yet given to other accounts is left out"
            )
        if self.scaled:
            self.notes.append(
                f"approximation: the children's GrpTRES under {', '.join(self.scaled)} add up "
                "to more than the parent's; their quotas are scaled down to fit it"
            )
        if any(len(c) > 1 for c in self.classes_of.values()):
            self.notes.append(
                f"{ASSUMPTION}: a GrpTRES of a GPU type with several classes fills the "
                "classes in fleet order"
            )
        return [
            TenantRec(
                acct,
                parent=up if up in self.accounts else None,
                quotas=[
                    QuotaRec(c, g, source=self._source(acct)) for c, g in self.quotas[acct].items()
                ],
                cohort=self._cohort.get(acct),
            )
            for acct, (up, _) in self.accounts.items()
        ]

    def _source(self, acct: str) -> str:
        if acct in self.capped:
            return GRPTRES
        return self._sources.get(acct, GRPTRES)

    def _share_rooms(self) -> set[str]:
        """Leaves without a limit under a capped account split its room (its quota less
        what the rest of its subtree holds), each with its nearest capped ancestor's;
        returns them."""
        self._sources: dict[str, str] = {}
        self._cohort: dict[str, str] = {}
        under: dict[str, list[str]] = defaultdict(list)
        for acct in self.accounts:
            if acct in self.capped or self.children[acct]:
                continue
            up = self.accounts[acct][0]
            while up in self.accounts and up not in self.capped:
                up = self.accounts[up][0]
            if up in self.capped:
                under[up].append(acct)
        for ancestor, open_ in under.items():
            for cls, nominal in list(self.quotas[ancestor].items()):
                room = max(nominal - self._subtree(ancestor, cls), 0)
                share, extra = divmod(room, len(open_))
                for i, leaf in enumerate(open_):
                    self.quotas[leaf][cls] = share + (1 if i < extra else 0)
            for leaf in open_:
                self._sources[leaf] = (
                    f"assumption: no GrpTRES in Slurm; an equal share of the GrpTRES of {ancestor}"
                )
        shared = {leaf for leaves in under.values() for leaf in leaves}
        if shared:
            self.notes.append(
                f"assumption: accounts without a GPU GrpTRES under an account with one "
                f"({', '.join(sorted(shared))}) split what it holds beyond the rest of its "
                "subtree"
            )
        return shared

    def _share_free(self, open_: list[str]) -> None:
        """Leaves without a limit anywhere above them split the GPUs no limit took, as
        nominal quotas, in one cohort without a borrowing limit (their Slurm accounts may
        use every GPU)."""
        if not open_ or not any(self.free.values()):
            return
        for cls, gpus in self.free.items():
            share, extra = divmod(gpus, len(open_))
            for i, acct in enumerate(open_):
                self.quotas[acct][cls] = share + (1 if i < extra else 0)
        for acct in open_:
            self._sources[acct] = "assumption: no GrpTRES in Slurm; an equal share of the free GPUs"
            if len(open_) > 1:
                self._cohort[acct] = UNLIMITED_COHORT
        names = ", ".join(open_)
        self.notes.append(
            f"assumption: accounts without a GPU GrpTRES ({names}) split the GPUs no GrpTRES "
            f"holds as nominal quotas"
            + (
                f", in cohort '{UNLIMITED_COHORT}' to use each other's idle GPUs"
                if len(open_) > 1
                else ""
            )
        )
