"""Compile the twin's hot path to C extension modules with mypyc, in place.

Why: the scheduler core and the event loop are plain, fully typed Python (mypy --strict),
and mypyc turns exactly that into C: attribute access on the core's classes becomes a
struct read and calls between them C calls, and the librt vectors (``vec[i64]``,
``vec[float]``) that hold the big heaps are read and written inline. The Philly trace
simulates about eight times as fast compiled (bench/bench_twin.py prints which build
ran). The Python sources stay the only source: the compiled modules are build outputs
next to them (git-ignored), made by ``make`` when sources change, and removed by
``make clean``.

Where no C compiler or Python headers are found, or the build fails, nothing is left
behind and aifactory runs as pure Python, with the same results; this script still
exits 0 so that ``make run`` and ``make test`` work on a machine with only Python.
``aifactory/__init__.py`` refuses to import a compiled module older than its source.

Usage: ``python scripts/build_native.py [--clean]``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
GROUP = "aifactory_native"  # name of mypyc's shared runtime module (top level of src/)


def _native_module() -> ModuleType:
    """aifactory/native.py, loaded by path (importing aifactory would apply its build rule)."""
    spec = importlib.util.spec_from_file_location("aif_native", SRC / "aifactory" / "native.py")
    if spec is None or spec.loader is None:
        msg = "src/aifactory/native.py not found"
        raise FileNotFoundError(msg)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_RULES = _native_module()
NATIVE: tuple[str, ...] = _RULES.NATIVE


def built_files() -> list[Path]:
    """Every compiled artefact this script can leave in the source tree."""
    out: list[Path] = [_RULES.compiled_path(m) for m in NATIVE]
    out.extend(SRC.glob(f"{GROUP}__mypyc*"))
    return [p for p in out if p.exists()]


def clean() -> None:
    """Remove the compiled modules (aifactory then runs as pure Python)."""
    for path in built_files():
        path.unlink()


def _why_not() -> str | None:
    """Why a native build cannot be attempted here, or None."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ('{cc}' not found)"
    include = sysconfig.get_paths().get("include", "")
    if not (Path(include) / "Python.h").exists():
        return f"no Python headers (Python.h not in {include})"
    try:
        import mypyc.build  # noqa: F401, PLC0415 (only needed here)
    except ImportError:
        return "mypyc is not installed (it comes with mypy, in the dev extra)"
    return None


def build() -> int:
    """Compile in place; on any failure leave pure Python behind and say why."""
    reason = _why_not()
    if reason is not None:
        print(f"native build skipped: {reason}; aifactory runs as pure Python")
        return 0
    clean()
    from mypyc.build import mypycify  # noqa: PLC0415
    from setuptools import setup  # noqa: PLC0415

    t0 = time.perf_counter()
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="aif-native-") as tmp:
        try:
            os.chdir(SRC)  # mypyc names modules from paths relative to here
            modules = mypycify(
                [*NATIVE, "--config-file", str(REPO / "pyproject.toml")],
                opt_level="3",
                target_dir=str(Path(tmp) / "c"),
                group_name=GROUP,
            )
            setup(
                name="aifactory-native",
                ext_modules=modules,
                script_args=[
                    "--quiet",
                    "build_ext",
                    "--inplace",
                    "--build-temp",
                    str(Path(tmp) / "obj"),
                    "--build-lib",
                    str(Path(tmp) / "lib"),
                ],
            )
        except (Exception, SystemExit) as exc:  # noqa: BLE001 (any failure: fall back)
            clean()
            print(f"native build failed ({exc}); aifactory runs as pure Python")
            return 0
        finally:
            os.chdir(cwd)
    print(f"native build: {len(NATIVE)} modules compiled in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--clean"]:
        clean()
        sys.exit(0)
    sys.exit(build())
