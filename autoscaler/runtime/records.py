"""Decision records: one JSON object per decision, for logs and `spec.outputs.decisions_path`.

Owns the serialised shape of a Decision (+ what the actuator did) so the JSON log line, the JSONL
file and the demo summary agree. Appending is line-atomic (one `write` of a full line, opened in
append mode), so a crash never leaves half a record for the next reader.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from autoscaler.actuators.base import ActuationResult
from autoscaler.core.types import Decision

log = logging.getLogger(__name__)


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(float(v), nd)


def decision_dict(d: Decision) -> dict[str, Any]:
    b = d.batching
    return {
        "time_s": round(d.time_s, 3),
        "target": str(d.target),
        "valid": d.valid,
        "desired_replicas": d.desired_replicas,
        "current_replicas": d.current_replicas,
        "reason": d.reason,
        "binding": d.binding.value,
        "panic": d.panic,
        "observed_rps": _r(d.observed_rps),
        "forecast_rps": _r(d.forecast_rps),
        "forecast_lo_rps": _r(d.forecast_lo_rps),
        "forecast_hi_rps": _r(d.forecast_hi_rps),
        "forecast_model": d.forecast_model,
        "capacity_rps": _r(d.capacity_rps),
        "lead_time_s": _r(d.lead_time_s, 1),
        "gpu_util": _r(d.gpu_util),
        "gpu_util_model": _r(d.gpu_util_model),
        "model_ready_replicas": d.model_ready_replicas,
        "model_versions": d.model_versions,
        "batching": {
            "max_batch_size": b.max_batch_size,
            "batch_timeout_us": b.batch_timeout_us,
            "num_batch_threads": b.num_batch_threads,
            "max_enqueued_batches": b.max_enqueued_batches,
        },
        "batching_changed": d.batching_changed,
        "proposals": [
            {"signal": p.signal, "replicas": p.replicas, "load_rps": _r(p.load_rps), "detail": p.detail}
            for p in d.proposals
        ],
        "notes": list(d.notes),
    }


def record(d: Decision, result: ActuationResult | None, *, leader: bool) -> dict[str, Any]:
    doc = decision_dict(d)
    doc["leader"] = leader
    doc["actuation"] = result.as_dict() if result is not None else None
    return doc


class DecisionLog:
    """Appends records to JSONL files (one per path; several specs may share one)."""

    def append(self, path: str, doc: dict[str, Any]) -> None:
        try:
            p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            line = (json.dumps(doc, separators=(",", ":")) + "\n").encode()
            fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot append decision record", extra={"path": path, "error": str(exc)})
