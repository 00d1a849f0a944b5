"""Consortia: federated data capture and analysis for hospital consortia.

Studies are code (one YAML file), patient records stay at each hospital's node, and
analyses across nodes exchange only aggregates whose combination equals pooling.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("consortia")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
