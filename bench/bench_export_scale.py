"""Export memory at 1M and 10M item values: does peak RSS stay flat when the data grows 10x?

    .venv/bin/python bench/bench_export_scale.py [--values 10000000] [--out bench/results/export_scale.md]

Builds two SQLite node databases of the cart-lbcl study directly with ``executemany`` (the
import path is measured in ``bench_capture.py``; here only the export matters): subjects
with adverse-event logs (``ae`` at ``ae_log.N``, 9 items per group instance), one tenth of
``--values`` and ``--values`` item values. Then each export runs in a child process doing only
the export (``bench_capture.py --export-child``), whose peak RSS is its VmHWM.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_capture import node, run_export

from consortia.storage.tables import event_instance, form_instance, subject

AE = {
    "ae_term": "Pyrexia",
    "ae_soc": "genrl",
    "ae_ctcae_version": "5.0",
    "ae_onset": "2025-03-02",
    "ae_grade": "2",
    "ae_serious": "0",
    "ae_related": "possible",
    "ae_outcome": "recovered",
    "ae_end": "2025-03-09",
}
EVENTS_PER_SUBJECT = 10
GROUPS_PER_FORM = 11
PER_SUBJECT = EVENTS_PER_SUBJECT * GROUPS_PER_FORM * len(AE)


def build(url: str, values: int) -> int:
    engine = node(url)
    now = datetime.now(UTC)
    subjects = max(1, values // PER_SUBJECT)
    with engine.begin() as connection:
        connection.execute(
            subject.insert(),
            [
                {
                    "id": s + 1,
                    "study": "CART-LBCL",
                    "site": "SG01",
                    "subject_id": f"SG01-{s:06d}",
                    "created_at": now,
                    "created_by": "bench",
                    "status": "on_study",
                }
                for s in range(subjects)
            ],
        )
        events, forms = [], []
        for s in range(subjects):
            for e in range(EVENTS_PER_SUBJECT):
                pk = s * EVENTS_PER_SUBJECT + e + 1
                events.append(
                    {
                        "id": pk,
                        "subject_pk": s + 1,
                        "event": "ae_log",
                        "instance": e + 1,
                        "created_at": now,
                    }
                )
                forms.append(
                    {
                        "id": pk,
                        "event_pk": pk,
                        "subject_pk": s + 1,
                        "form": "ae",
                        "status": "complete",
                        "version": 1,
                        "study_version": 1,
                        "updated_at": now,
                        "updated_by": "bench",
                    }
                )
        connection.execute(event_instance.insert(), events)
        connection.execute(form_instance.insert(), forms)
        raw = connection.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        batch: list[tuple[int, str, int, str, None]] = []
        written = 0
        for form_pk in range(1, len(forms) + 1):
            for group in range(1, GROUPS_PER_FORM + 1):
                batch.extend((form_pk, item, group, text, None) for item, text in AE.items())
            if len(batch) >= 200_000:
                cursor.executemany(
                    "INSERT INTO item_value (form_pk, item, group_instance, value_text, value_num) VALUES (?, ?, ?, ?, ?)",
                    batch,
                )
                written += len(batch)
                batch = []
        if batch:
            cursor.executemany(
                "INSERT INTO item_value (form_pk, item, group_instance, value_text, value_num) VALUES (?, ?, ?, ?, ?)",
                batch,
            )
            written += len(batch)
    engine.dispose()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--values", type=int, default=10_000_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/export_scale.md"))
    args = parser.parse_args()
    lines = [
        "# Export memory at 1x and 10x (`bench/bench_export_scale.py`)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
        f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on a shared 2-core machine.",
        "",
        "| format | values in DB | rows written | seconds | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sizes = {}
        for size in (args.values // 10, args.values):
            url = f"sqlite:///{folder / f'scale-{size}.db'}"
            started = time.perf_counter()
            sizes[size] = (url, build(url, size))
            print(
                f"built {sizes[size][1]:,} values in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        for fmt in ("csv-long", "csv"):
            rss = []
            for url, count in sizes.values():
                result = run_export(url, fmt, folder)
                rss.append(result["rss_kib"])
                line = (
                    f"| {fmt} | {count:,} | {result['rows']:,} | {result['seconds']:.1f} | "
                    f"{result['rss_kib'] / 1024:.0f} |"
                )
                print(line, flush=True)
                lines.append(line)
            lines.append(f"| {fmt} growth 10x data | | | | **{rss[1] / rss[0]:.2f}x** |")
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
