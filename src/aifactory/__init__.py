"""aifactory: the control plane and digital twin for national-scale GPU AI factories."""

from importlib.metadata import PackageNotFoundError, version

from aifactory import native

# Compiled hot path (mypyc) if built and fresh, else pure Python: see aifactory/native.py.
BUILD = native.install()

try:
    __version__ = version("aifactory")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["BUILD", "__version__"]
