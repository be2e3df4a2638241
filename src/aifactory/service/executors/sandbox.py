"""What confines a local job: Landlock, cgroups and the kill of a whole process tree.

Standard library only, like the supervisor (:mod:`.supervise`), which loads this module by
path when it runs as ``python -I -S supervise.py``; the executor imports it to probe the
host (:func:`cgroup_base`, :func:`landlock_abi`) and to kill a job whose supervisor died
(:func:`cgroup_signal`). See :mod:`.supervise` for what the job may and may not do.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import stat
import sys
from pathlib import Path
from typing import Any

# Linux ABI numbers: prctl options and the Landlock system calls (the same number on every
# architecture, as they were added after the syscall tables were unified).
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_LANDLOCK_SCOPE_SIGNAL = 1 << 1  # ABI 6
# File-system access rights (ABI 1 has bits 0-12, REFER is ABI 2, TRUNCATE ABI 3). IOCTL_DEV
# (ABI 5) is left unhandled so that GPU drivers' ioctls are never refused.
_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_ABI1 = (1 << 13) - 1
_FS_REFER = 1 << 13
_FS_TRUNCATE = 1 << 14
_FS_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
_FS_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE
_FS_DEVICES = _FS_READ | _FS_WRITE_FILE | _FS_TRUNCATE
# Where any job may write besides its working directory (less whatever is hidden).
WRITABLE_ROOTS = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108 (granted to jobs, not used here)


def cgroup_base() -> tuple[str | None, str]:
    """Where per-job cgroups can be made (this process's cgroup v2 directory), and why not.

    cgroup v2 is found in ``/proc/self/mountinfo`` (``/sys/fs/cgroup`` on a unified host,
    ``/sys/fs/cgroup/unified`` on a hybrid one); it is usable when this user may write the
    directory and its ``cgroup.procs`` (root, or a delegated subtree such as a systemd
    unit with ``Delegate=yes``).
    """
    mount = root = None
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            parts = line.split()
            sep = parts.index("-")
            if parts[sep + 1] == "cgroup2":
                root, mount = parts[3], parts[4].replace("\\040", " ")
                break
        cgroups = Path("/proc/self/cgroup").read_text().splitlines()
        own = next((ln[3:].strip() for ln in cgroups if ln.startswith("0::")), None)
    except (OSError, ValueError):
        return None, "cannot read /proc/self/mountinfo or /proc/self/cgroup"
    if mount is None or root is None or own is None:
        return None, "no cgroup v2 hierarchy is mounted"
    if root != "/":
        if not own.startswith(root):
            return None, f"this process's cgroup {own} is outside the mounted {root}"
        own = own[len(root) :] or "/"
    base = os.path.normpath(mount + own)
    if not os.access(base, os.W_OK) or not os.access(f"{base}/cgroup.procs", os.W_OK):
        return None, f"cgroup v2 at {base} is not writable by uid {os.geteuid()}"
    return base, f"cgroup v2 at {base}"


# -- Landlock --------------------------------------------------------------------------------


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _syscall(*args: Any) -> int:
    rc = int(_libc().syscall(*args))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is missing or disabled."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        return _syscall(
            ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET),
            None,
            ctypes.c_size_t(0),
            ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
        )
    except OSError:
        return 0


def _handled(abi: int) -> int:
    rights = _FS_ABI1
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    return rights


def _within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


class _Ruleset:
    """A Landlock ruleset being built: what a job may do, everything else refused."""

    def __init__(self, abi: int, hidden: list[str]) -> None:
        self.handled = _handled(abi)
        self.hidden = hidden
        attr = _RulesetAttr(self.handled, 0, _LANDLOCK_SCOPE_SIGNAL if abi >= 6 else 0)
        size = 24 if abi >= 6 else 16 if abi >= 4 else 8
        self.fd = _syscall(
            ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET),
            ctypes.byref(attr),
            ctypes.c_size_t(size),
            ctypes.c_uint32(0),
        )

    def allow(self, path: str, rights: int) -> None:
        """Allow ``rights`` beneath ``path`` (no questions asked: the job's own directory)."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        try:
            self._add(fd, rights)
        finally:
            os.close(fd)

    def grant(self, path: str, rights: int) -> None:
        """Allow ``rights`` beneath ``path`` except beneath the hidden paths.

        Landlock only allows, so a directory that holds a hidden path gets no rule itself:
        each of its entries is granted instead, recursively, all but the way to the hidden
        path. Decisions are made on the path of the opened fd (``/proc/self/fd``), not on
        the name, so a symlink can never smuggle a hidden path into a rule.
        """
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return  # gone, dangling or not reachable: nothing to allow
        try:
            real = str(Path(f"/proc/self/fd/{fd}").readlink())
            if any(_within(real, h) for h in self.hidden):
                return
            if any(_within(h, real) for h in self.hidden):
                if real != os.path.normpath(path):
                    return  # reached through a link: its real place is walked in its turn
                with os.scandir(real) as entries:
                    names = [e.name for e in entries]
                for name in names:
                    self.grant(f"{real.rstrip('/')}/{name}", rights)
                return
            self._add(fd, rights)
        except OSError:
            return
        finally:
            os.close(fd)

    def _add(self, fd: int, rights: int) -> None:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= _FS_FILE_ONLY
        rights &= self.handled
        if not rights:
            return
        attr = _PathBeneathAttr(rights, fd)
        _syscall(
            ctypes.c_long(_SYS_LANDLOCK_ADD_RULE),
            ctypes.c_int(self.fd),
            ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
            ctypes.byref(attr),
            ctypes.c_uint32(0),
        )


def job_ruleset(abi: int, hidden: list[str], workdir: str) -> int:
    """The fd of the Landlock ruleset of a job working in ``workdir``; -1 without Landlock.

    The job may read everything but ``hidden``, use device files, write the shared
    temporary roots and do anything in its own working directory.
    """
    if abi <= 0:
        return -1
    rules = _Ruleset(abi, hidden)
    everything = rules.handled
    rules.grant("/", _FS_READ)
    rules.grant("/dev", _FS_DEVICES)
    for root in WRITABLE_ROOTS:
        rules.grant(root, everything)
    rules.allow(workdir, everything)
    return rules.fd


def restrict_self(ruleset: int) -> None:
    """Enter the Landlock domain of ``ruleset`` (for good: it is inherited and never lifted)."""
    restrict = ctypes.c_long(_SYS_LANDLOCK_RESTRICT_SELF)
    _syscall(restrict, ctypes.c_int(ruleset), ctypes.c_uint32(0))


def prctl(option: int, value: int) -> None:
    """``prctl(option, value)``, OSError on failure."""
    if _libc().prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


# -- killing a whole job -----------------------------------------------------------------------


def descendants(root: int) -> list[int]:
    """Every living descendant of ``root``, from a scan of ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            line = (entry / "stat").read_text()
        except OSError:
            continue
        rest = line[line.rindex(")") + 2 :].split()
        if rest[0] != "Z":
            children.setdefault(int(rest[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def cgroup_signal(cgroup: str, sig: int) -> None:
    """Send ``sig`` to every process of a cgroup (SIGKILL through ``cgroup.kill``: atomic)."""
    kill_file = Path(cgroup, "cgroup.kill")
    if sig == signal.SIGKILL and kill_file.exists():
        with contextlib.suppress(OSError):
            kill_file.write_text("1")
        return
    try:
        pids = [int(p) for p in Path(cgroup, "cgroup.procs").read_text().split()]
    except OSError:
        return
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def make_cgroup(base: str, name: str, leaves: int) -> tuple[str, list[str]]:
    """A job's cgroup under ``base`` and ``leaves`` cgroups in it, one per rank.

    The processes live in the leaves (cgroup v2 keeps processes out of inner cgroups once
    controllers are delegated), so a rank's leftovers can be killed alone while
    ``cgroup.kill`` of the job's cgroup still kills every rank at once. OSError if any
    cannot be made; nothing is left behind then.
    """
    path = Path(base, "aifactory-jobs", name)
    path.parent.mkdir(exist_ok=True)
    remove_cgroup(str(path), quiet=True)  # a stale one of an earlier supervisor with this pid
    path.mkdir()
    try:
        made = []
        for rank in range(leaves):
            leaf = path / f"rank-{rank}"
            leaf.mkdir()
            made.append(str(leaf))
    except OSError:
        remove_cgroup(str(path), quiet=True)
        raise
    return str(path), made


def cgroup_populated(cgroup: str) -> bool:
    """Whether any process is left in ``cgroup`` or below it."""
    try:
        events = Path(cgroup, "cgroup.events").read_text().split("\n")
    except OSError:
        return False
    return "populated 1" in events


def remove_cgroup(cgroup: str, *, quiet: bool = False) -> str | None:
    """Remove an (empty) cgroup and its leaves; why it could not be, or None."""
    path = Path(cgroup)
    with contextlib.suppress(OSError):
        for leaf in path.iterdir():
            if leaf.is_dir():
                with contextlib.suppress(OSError):
                    leaf.rmdir()
    try:
        path.rmdir()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return None if quiet else f"cannot remove cgroup {cgroup}: {exc}"
    return None
