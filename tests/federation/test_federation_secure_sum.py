"""Secure aggregation over real HTTP (each node's app behind ``httpx.ASGITransport``), three
nodes: the lead learns the pooled crosstab, never one node's, and the minimum cell count
applies to the pooled total.

* secure totals equal plain totals, to the last bit;
* what the lead receives from a node is not its plain contribution;
* a node that announced its key and drops out fails the round, naming it;
* with two nodes, each node's policy decides (``secure_min_nodes``).

Floats (fixed point modulo 2^128) are checked against the plain sum to 1e-12 relative in
``test_float_and_integer_totals_are_exact``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import numpy as np
import pytest

from consortia.exceptions import NodeUnavailableError
from consortia.federation.apps import create_node_app
from consortia.federation.coordinator import AnalysisRefused
from consortia.federation.policy import NodePolicy
from consortia.federation.protocol import decode_arrays
from consortia.federation.secure_sum import mask, public_key, session_key, unmask
from consortia.federation.signing import generate_key
from consortia.federation.tables import ColumnType, Table
from consortia.federation.transport import PushTransport
from consortia.stats.contingency import combine_crosstab, crosstab_node

REQUEST = {
    "kind": "crosstab",
    "table": "trial",
    "rows": "arm",
    "columns": "grade",
    "secure": True,
    "row_levels": ["a", "b"],
    "column_levels": ["1", "2", "3"],
}
TABLES = {
    "sgh": [[20, 2, 15], [12, 30, 1]],
    "ruijin": [[9, 2, 11], [14, 25, 2]],
    "nuh": [[30, 2, 25], [20, 40, 3]],
}


def grades_table(cells: list[list[int]], missing: int = 0) -> Table:
    arms: list[Any] = []
    grades: list[Any] = []
    for arm, row in zip(["a", "b"], cells, strict=True):
        for grade, count in zip(["1", "2", "3"], row, strict=True):
            arms += [arm] * count
            grades += [grade] * count
    arms += [None] * missing
    grades += ["1"] * missing
    return Table(
        "trial",
        {"arm": np.array(arms, dtype=object), "grade": np.array(grades, dtype=object)},
        {"arm": ColumnType.TEXT, "grade": ColumnType.TEXT},
    )


class HostRouter(httpx.AsyncBaseTransport):
    """Routes requests to one ASGI app per host; ``fail`` makes a host drop out after its
    first answer (its second request fails as a refused connection)."""

    def __init__(self, apps: Mapping[str, Any], fail: str | None = None) -> None:
        self.routes = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}
        self.fail = fail
        self.calls: dict[str, int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls[host] = self.calls.get(host, 0) + 1
        if host == self.fail and self.calls[host] > 1:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.routes[host].handle_async_request(request)


def run_http(federation: Any, request: dict[str, Any], fail: str | None = None) -> dict[str, Any]:
    apps = {f"{name}.test": create_node_app(r) for name, r in federation.runners.items()}

    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=HostRouter(apps, fail)) as client:
            result = await federation.coordinator.run_analysis(
                request, federation.handles, PushTransport(client)
            )
            return result.to_dict()

    return asyncio.run(main())


def test_secure_totals_equal_plain_totals_and_the_pooled_cell_rule_applies(
    make_federation: Any,
) -> None:
    federation = make_federation(
        tables={name: grades_table(cells, missing=3) for name, cells in TABLES.items()}
    )
    result = run_http(federation, REQUEST)
    assert result["complete"] is True
    pooled = np.sum([np.asarray(cells) for cells in TABLES.values()], axis=0)
    estimates = result["estimates"]
    # grade 2 of arm a holds 2 at each node (each suppressed alone) but 6 pooled: released
    assert estimates["table"] == pooled.tolist()
    assert estimates["n"] == int(pooled.sum())
    assert estimates["missing"] == 9
    assert estimates["nodes"] == 3
    plain = combine_crosstab([crosstab_node(*_pairs(cells)) for cells in TABLES.values()])
    assert estimates["chi2"] == plain.chi2  # the same table, so the same test, bit for bit
    assert estimates["p_value"] == plain.p_value


def _pairs(cells: list[list[int]]) -> tuple[list[str], list[str]]:
    table = grades_table(cells)
    return list(table.column("arm")), list(table.column("grade"))


def test_a_pooled_small_cell_is_suppressed_with_its_complements(make_federation: Any) -> None:
    tables = {name: [[20, 0, 15], [12, 30, 1 if name == "nuh" else 0]] for name in TABLES}
    federation = make_federation(tables={n: grades_table(c) for n, c in tables.items()})
    estimates = run_http(federation, REQUEST)["estimates"]
    assert estimates["table"][1][2] == "<5"  # 1 pooled
    assert estimates["suppressed"] >= 2
    assert estimates["chi2"] is None


def test_the_lead_never_sees_a_nodes_plain_contribution(make_federation: Any) -> None:
    federation = make_federation(tables={n: grades_table(c) for n, c in TABLES.items()})
    run_http(federation, REQUEST)
    for name, cells in TABLES.items():
        # what the node released, exactly as the lead received it (the audit keeps it)
        released = federation.audits[name].events[-1]["released"]
        words = np.asarray(decode_arrays(released["masked_integers"]), dtype=np.int64)
        plain = [*np.asarray(cells).reshape(-1).tolist(), 0]
        assert words.tolist() != plain
        assert not set(words.tolist()) & set(plain)
        # masked words look like random 64-bit numbers, not counts
        assert np.abs(words.astype(np.float64)).min() > 2.0**32


def test_a_node_that_drops_out_mid_round_fails_the_round_naming_it(
    make_federation: Any,
) -> None:
    federation = make_federation(tables={n: grades_table(c) for n, c in TABLES.items()})
    with pytest.raises(NodeUnavailableError) as failed:
        run_http(federation, REQUEST, fail="ruijin.test")
    assert "ruijin" in str(failed.value)


def test_with_two_nodes_each_nodes_policy_decides(make_federation: Any) -> None:
    two = {name: grades_table(TABLES[name]) for name in ("ruijin", "nuh")}
    with pytest.raises(AnalysisRefused) as refused:
        run_http(make_federation(tables=two), REQUEST)
    assert {r["rule"] for r in refused.value.refusals} == {"secure_aggregation"}
    allowed = make_federation(tables=two, policy=NodePolicy(secure_min_nodes=2))
    result = run_http(allowed, REQUEST)
    pooled = np.asarray(TABLES["ruijin"]) + np.asarray(TABLES["nuh"])
    estimates = result["estimates"]
    assert estimates["n"] == int(pooled.sum())
    assert estimates["table"][0][1] == "<5"  # 4 pooled: the pooled cell rule
    cells = np.ravel(np.asarray(estimates["table"], dtype=object))
    for got, want in zip(cells, pooled.ravel(), strict=True):
        assert got == want or isinstance(got, str)


def test_float_and_integer_totals_are_exact() -> None:
    rng = np.random.default_rng(11)
    names = ["a", "b", "c", "d"]
    keys = {name: session_key(generate_key(), "lead", "s") for name in names}
    public = {name: public_key(key) for name, key in keys.items()}
    integers = {name: rng.integers(-(2**40), 2**40, 50) for name in names}
    integers["a"][0] = 2**62  # sums past 2^63 wrap and come back
    integers["b"][0] = 2**62 - 1
    integers["c"][0] = -(2**62)
    floats = {name: rng.normal(0, 1e3, 40) * 10.0 ** rng.integers(-3, 6, 40) for name in names}
    shares = {
        name: mask(name, keys[name], public, "s", integers[name], floats[name]) for name in names
    }
    total_integers, total_floats = unmask(
        {
            name: {**share, "masked_integers": share["masked_integers"]}
            for name, share in shares.items()
        },
        public,
    )
    assert total_integers.tolist() == np.sum(list(integers.values()), axis=0).tolist()
    plain = np.sum(list(floats.values()), axis=0)
    np.testing.assert_allclose(total_floats, plain, rtol=1e-12, atol=0)
    for name in names:  # no share is its plain values
        assert not np.array_equal(shares[name]["masked_integers"], integers[name])


def test_secure_kaplan_meier_equals_the_plain_curves_and_logrank(make_federation: Any) -> None:
    plain_request = {
        "kind": "kaplan_meier",
        "table": "trial",
        "time": "pfs_days",
        "event": "pfs_event",
        "group": "arm",
    }
    secure_request = {**plain_request, "secure": True, "groups": ["car_t", "soc"], "horizon": 910}
    secure = run_http(make_federation(), secure_request)
    plain = run_http(make_federation(), plain_request)
    assert secure["complete"] is True
    assert secure["estimates"] == plain["estimates"]  # the same counts: the same curves
    assert secure["estimates"]["logrank"] is not None


def test_a_secure_kaplan_meier_node_share_is_masked(make_federation: Any) -> None:
    federation = make_federation()
    request = {
        "kind": "kaplan_meier",
        "table": "trial",
        "time": "pfs_days",
        "event": "pfs_event",
        "secure": True,
        "horizon": 910,
    }
    run_http(federation, request)
    released = federation.audits["sgh"].events[-1]["released"]
    assert set(released) == {"step", "masked_integers", "masked_floats"}
    words = np.asarray(decode_arrays(released["masked_integers"]), dtype=np.int64)
    assert np.abs(words.astype(np.float64)).min() > 2.0**32  # not counts
