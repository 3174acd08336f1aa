"""Replay one per-second load through several policies: the comparison behind `simulate`.

Owned by the simulator (not by a command) because every way of getting a load — a shipped trace, a
trace file, Prometheus history — ends in the same comparison; the commands only add progress bars,
the report and the table. One broken policy never loses the others' results: its error is returned
beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autoscaler.core.types import FloatArray
from autoscaler.sim import engine
from autoscaler.sim.engine import SimResult
from autoscaler.spec.types import ServingAutoscalerSpec

# progress_for(policy, total_steps) -> tick(done, total)
ProgressFactory = Callable[[str, int], Callable[[int, int], None]]


def compare_rates(
    rate_rps: FloatArray,
    spec: ServingAutoscalerSpec,
    policies: Sequence[str],
    *,
    name: str,
    start_s: float = 0.0,
    history_rps: FloatArray | None = None,
    knobs: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    progress_for: ProgressFactory | None = None,
) -> tuple[list[SimResult], dict[str, str]]:
    """Every policy on the per-second `rate_rps`: (results in policy order, {policy: error} for failures)."""
    results: list[SimResult] = []
    errors: dict[str, str] = {}
    for pol in policies:
        tick = progress_for(pol, len(rate_rps)) if progress_for is not None else None
        try:
            results.append(
                engine.run_rates(
                    rate_rps,
                    spec,
                    pol,
                    trace_name=name,
                    start_s=start_s,
                    seed=seed,
                    knobs=(knobs or {}).get(pol, {}),
                    history_rps=history_rps,
                    progress=tick,
                )
            )
        except Exception as e:  # one broken policy must not lose the others' results
            errors[pol] = f"{type(e).__name__}: {e}"
    return results, errors
