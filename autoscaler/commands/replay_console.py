"""What every replay command prints: per-policy progress bars and the comparison table.

Shared by `simulate` (traces and scenarios) and `simulate --from-prometheus` (history), which run the
same comparison (`sim/compare.py`, `engine.run`) and must read the same on screen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from autoscaler.sim.engine import SimResult
from autoscaler.sim.report import gap_note, summary_rows


def progress_bars(console: Console) -> Progress:
    """One bar per policy, elapsed and remaining time."""
    return Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f} %"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def print_table(results: Sequence[SimResult], console: Console) -> None:
    """The comparison table every replay command ends with."""
    rows = summary_rows(results)
    goal = results[0].spec.slo.attainment if results else 0.999
    t = Table(title=f"SLO attainment goal {goal * 100:g} % — cost at the same SLO")
    if results:
        t.caption = f"{rows[0]['history_note']}; {gap_note(results[0].summary)}"
    for col in ("policy", "attainment", "p99 ms", "rejected", "replica-h", "× oracle", "meets SLO", "wall s"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for r in rows:
        meets = bool(r["meets_slo"])
        xo = r.get("x_oracle")
        p99 = r["p99_ms"]
        t.add_row(
            str(r["policy"]),
            f"{r['slo_attainment'] * 100:.3f} %",
            "∞" if p99 == float("inf") else f"{p99:.1f}",
            f"{r['rejected']:,}",
            f"{r['replica_hours']:.1f}",
            "–" if xo is None else f"{xo:.2f}",
            "[green]yes[/green]" if meets else "[red]no[/red]",
            f"{r['wall_s']:.1f}",
        )
    console.print(t)


def progress_factory(prog: Progress) -> Callable[[str, int], Callable[[int, int], None]]:
    """`sim.compare.ProgressFactory` drawing on `prog`: a new bar per policy."""

    def make(policy: str, total: int) -> Callable[[int, int], None]:
        task = prog.add_task(policy, total=total)

        def tick(done: int, total: int) -> None:
            prog.update(task, completed=done)

        return tick

    return make
