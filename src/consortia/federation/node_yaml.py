"""The YAML node config of earlier releases, read only to move it into consortia.toml.

A node's federation configuration is the ``[node]`` section of its ``consortia.toml``
(:func:`~consortia.federation.nodeconfig.node_config_from_settings`). Before that section
existed a node kept it in a YAML file (``node.yaml``)::

    name: sgh
    url: https://consortia.sgh.example/
    key_file: keys/node.pem
    peers: [{name: lead, url: https://lead.example/, public_key: "base64…"}]
    tables: {cart: {edc: CART-LBCL}}
    policy: {min_cell_count: 5}

Nothing serves or reads such a file at run time any more: ``consortia config
import-node-yaml FILE`` (the one user of :func:`read_node_yaml`) writes it into the
``[node]`` section. The file is read with :func:`~consortia.domain.yamlsource.load_yaml_file`,
which refuses what a config never needs and an attacker would use (aliases, custom tags,
duplicate keys, files over 10 MiB, deep nesting, bytes that are not UTF-8), and every
problem is reported at once as ``FILE:LINE:COLUMN: field: message``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from consortia.domain.yamlsource import YamlDocument, load_yaml_file
from consortia.exceptions import ConfigurationError, StudyDefinitionError
from consortia.federation.nodeconfig import NodeConfig

__all__ = ["read_node_yaml"]


def read_node_yaml(path: Path) -> NodeConfig:
    """The node config a YAML file of earlier releases holds (paths relative to the file).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "node.yaml").write_text("name: sgh\\npolicy: {min_cell_count: 7}\\n")
    >>> config = read_node_yaml(folder / "node.yaml")
    >>> config.name, config.policy.min_cell_count, config.base_dir == folder.resolve()
    ('sgh', 7, True)
    >>> _ = (folder / "bad.yaml").write_text("name: sgh\\npolicy:\\n  min_cell_count: -1\\n")
    >>> read_node_yaml(folder / "bad.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    consortia.exceptions.ConfigurationError: .../bad.yaml:3:19: policy.min_cell_count: ...
    """
    try:
        document = load_yaml_file(path)
    except StudyDefinitionError as error:
        lines = (
            str(problem).replace("a study file", "a node config") for problem in error.problems
        )
        raise ConfigurationError("\n".join(lines)) from None
    data: Any = document.value
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}:1:1: a node config is a mapping of fields")
    try:
        return NodeConfig.model_validate({**data, "base_dir": path.resolve().parent})
    except PydanticValidationError as exc:
        raise ConfigurationError(
            "\n".join(_located(document, path, error) for error in exc.errors())
        ) from None


def _located(document: YamlDocument, path: Path, error: Any) -> str:
    loc = tuple(part for part in error["loc"] if isinstance(part, str | int))
    # a table's declaration is a tagged union: its tag ("file", "edc") is not a key
    tagged = len(loc) > 3 and loc[0] == "tables" and loc[2] in ("file", "edc")
    keys = (*loc[:2], *loc[3:]) if tagged else loc
    line, column = document.position(keys)
    return f"{path}:{line}:{column}: {'.'.join(str(part) for part in keys)}: {error['msg']}"
