"""What a node's server imports to start: the app of a federated node (here a hub, which
mounts the most) is built without importing ``scipy`` (about a second and tens of MB per
process) or any analysis kind's module; a kind is imported when a request first names it,
and ``scipy.stats`` when a statistic first needs it.

Checked in a fresh interpreter, on the modules it holds, not on timings (the times are in
bench/RESULTS.md, "Scale on one machine").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from consortia.federation.kinds import BUILT_IN
from processes import START_SECONDS

SCRIPT = """
import json, sys
from pathlib import Path
from consortia.app import create_app
from consortia.config import Settings
from consortia.federation.signing import generate_key, save_key
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade

folder = Path(sys.argv[2])
url = f"sqlite:///{folder / 'hub.db'}"
engine = make_engine(url)
upgrade(engine)
engine.dispose()
save_key(generate_key(), folder / "hub.pem")
settings = Settings(
    database_url=url,
    node_name="hub",
    node_url="http://hub.test",
    node_dir=folder,
    node={"key_file": "hub.pem", "role": "hub", "consortium": "Test consortium"},
)
app = create_app(settings)
built = sorted(sys.modules)
from consortia.federation.kinds import get_kind
get_kind("cox")
kinds = sorted(name for name in sys.modules if name.startswith("consortia.federation.kinds."))
from consortia.stats.survival import kaplan_meier
fit = kaplan_meier([1.0, 2.0, 3.0], [1, 0, 1])
used = "scipy.stats" in sys.modules
open(sys.argv[1], "w").write(json.dumps({"built": built, "kinds": kinds, "used": used}))
"""


def test_building_a_nodes_app_does_not_import_scipy_stats_until_a_statistic_needs_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "modules.json"
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=START_SECONDS,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    found = json.loads(out.read_text(encoding="utf-8"))
    assert "consortia.federation.kinds" in found["built"]  # the registry of analysis kinds
    assert [name for name in found["built"] if name.split(".")[0] == "scipy"] == []
    loaded = {name for name in found["built"] if name.startswith("consortia.federation.kinds.")}
    assert {f"consortia.federation.kinds.{module}" for module, _ in BUILT_IN.values()}.isdisjoint(
        loaded - {"consortia.federation.kinds.base"}
    )
    assert "consortia.federation.kinds.cox" in found["kinds"]  # once a request names it
    assert found["used"] is True  # a confidence interval imported it when it was needed
