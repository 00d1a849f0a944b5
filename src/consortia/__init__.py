"""Consortia: federated data capture and analysis for hospital consortia.

Studies are code (one YAML file), patient records stay at each hospital's node, and
analyses across nodes exchange only aggregates whose combination equals pooling.

Importing the package imports nothing else: ``__version__`` is read from the installed
package's metadata when first asked for (``importlib.metadata`` alone takes ~30 ms, which
``consortia --help`` need not pay).

>>> import consortia
>>> consortia.__version__.count(".") >= 1
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["__version__"]

if TYPE_CHECKING:
    __version__: str


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("consortia")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        found = "0.0.0"
    globals()["__version__"] = found
    return found
