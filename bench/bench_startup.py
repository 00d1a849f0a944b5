"""How long ``consortia --version`` and ``consortia --help`` take, against a bare Typer app.

Each round runs, one after the other, every variant of a command: ``python -m consortia
OPTION`` on this tree's code, on an older revision's (``--before REV``: exported with ``git
archive REV src`` into a temporary folder), a bare Typer app with one command and a
``--version`` option (written to a temporary file), and a bare Python (``python -c pass``:
the interpreter's own start, the floor under any command). Alternating the variants (A B A B ...)
spreads the machine's load over all of them alike; the report gives the median wall and CPU
time (user + system, of the child) of ``--runs`` rounds, each variant's ratio to the bare
app's, and every run. ``import consortia.app`` is timed too (no bare counterpart).

    PYTHONPATH=src nice .venv/bin/python bench/bench_startup.py --runs 15 --before 1d4e0f9

writes ``bench/results/startup.md`` (``--out``) and prints the same table.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from cluster import machine  # noqa: E402

BARE_APP = '''
import typer

app = typer.Typer(add_completion=False)


def _version(value: bool) -> None:
    if value:
        typer.echo("bare 1.0")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True)) -> None:
    """A bare Typer app: one option, one command."""


@app.command()
def hello() -> None:
    """Say hello."""
    typer.echo("hello")


app()
'''


@dataclass
class Variant:
    """One way of running a command: its label, argv and PYTHONPATH, and its timings."""

    label: str
    argv: list[str]
    pythonpath: str | None
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def run(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSORTIA_")}
        env.pop("PYTHONPATH", None)
        if self.pythonpath is not None:
            env["PYTHONPATH"] = self.pythonpath
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        completed = subprocess.run(
            self.argv, env=env, capture_output=True, check=False, cwd=tempfile.gettempdir()
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if completed.returncode != 0:
            raise SystemExit(
                f"{self.label}: exit {completed.returncode}\n{completed.stderr.decode()[-2000:]}"
            )
        self.wall.append(wall)
        self.cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))


def export_source(revision: str, into: Path) -> Path:
    """``git archive REVISION src`` unpacked under ``into``; the ``src`` folder."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def measure(groups: dict[str, list[Variant]], runs: int) -> None:
    for _ in range(runs):
        for variants in groups.values():
            for variant in variants:
                variant.run()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def report(groups: dict[str, list[Variant]], *, runs: int, header: str) -> str:
    lines = [
        header,
        "",
        "| command | code | wall ms (median) | CPU ms (median) | wall / bare | CPU / bare |",
        "|---|---|---|---|---|---|",
    ]
    for command, variants in groups.items():
        bare = next((v for v in variants if v.label == "bare Typer"), None)
        for variant in variants:
            wall, cpu = statistics.median(variant.wall), statistics.median(variant.cpu)
            ratios = ("–", "–")
            if bare is not None:
                ratios = (
                    f"{wall / statistics.median(bare.wall):.2f}",
                    f"{cpu / statistics.median(bare.cpu):.2f}",
                )
            lines.append(
                f"| `{command}` | {variant.label} | **{_ms(wall)}** | {_ms(cpu)} "
                f"| {ratios[0]} | {ratios[1]} |"
            )
    lines += ["", f"Every run, in ms (wall / CPU), {runs} rounds:", ""]
    for command, variants in groups.items():
        for variant in variants:
            pairs = ", ".join(
                f"{_ms(w)}/{_ms(c)}" for w, c in zip(variant.wall, variant.cpu, strict=True)
            )
            lines.append(f"- `{command}`, {variant.label}: {pairs}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds (each runs every variant)")
    parser.add_argument("--before", help="also time this revision's code (git archive REV src)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "startup.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        scratch = Path(folder)
        bare_script = scratch / "bare_typer.py"
        bare_script.write_text(BARE_APP, encoding="utf-8")
        codes = [("this tree", str(ROOT / "src"))]
        if args.before:
            codes.insert(0, (f"before ({args.before})", str(export_source(args.before, scratch))))
        python = sys.executable
        groups: dict[str, list[Variant]] = {}
        for option in ("--version", "--help"):
            variants = [
                Variant(label, [python, "-m", "consortia", option], path) for label, path in codes
            ]
            variants.append(Variant("bare Typer", [python, str(bare_script), option], None))
            variants.append(Variant("bare Python", [python, "-c", "pass"], None))
            groups[f"consortia {option}"] = variants
        groups["import consortia.app"] = [
            Variant(label, [python, "-c", "import consortia.app"], path) for label, path in codes
        ]
        # one untimed round first: compiles the .pyc files and warms the page cache
        for variants in groups.values():
            for variant in variants:
                variant.run()
                variant.wall.clear()
                variant.cpu.clear()
        load_before = os.getloadavg()
        started = datetime.now(UTC)
        measure(groups, args.runs)
        load_after = os.getloadavg()

    header = (
        f"# Start-up: `consortia --version` / `--help` against a bare Typer app\n\n"
        f"Machine: {machine()}. Run of {started:%Y-%m-%d %H:%M} UTC; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; niceness {os.nice(0)}. "
        f"Medians of {args.runs} rounds, the variants alternated in each round.\n\n"
        f"    PYTHONPATH=src .venv/bin/python bench/bench_startup.py {' '.join(sys.argv[1:])}"
    )
    text = report(groups, runs=args.runs, header=header)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
