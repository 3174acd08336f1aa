"""A failed actuation is reported (log line, counter, record), never a traceback or a lost tick.

Found by benchmarks/fault_matrix.py: `log.error(..., extra={"message": ...})` raised KeyError
("Attempt to overwrite 'message' in LogRecord") on every FAILED actuation, so the target's tick
died with a logged traceback. The API server (kmock) refuses every write with 403 here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import kmock
import pytest
from test_runtime_kubeemu import VersionedEmulator
from test_runtime_loop import Load, setup

from autoscaler.actuators.base import ScaleOutcome

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)


async def test_refused_writes_fail_the_actuation_not_the_tick(
    kmock: VersionedEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = setup(kmock, Load(9000.0), tmp_path)

    async def forbid_writes(req: kmock.Request) -> None:
        if req.method in ("PATCH", "PUT", "POST") and req.resource is not None and req.resource.plural != "events":
            raise kmock_forbidden()

    kmock.before = forbid_writes
    caplog.set_level(logging.DEBUG)
    (r,) = await loop.tick()
    assert r.actuation.scale is ScaleOutcome.FAILED
    assert loop.stats.failed_ticks == 0
    assert not [rec for rec in caplog.records if rec.exc_info]
    assert any(rec.getMessage() == "actuation failed" for rec in caplog.records)
    assert (tmp_path / "decisions.jsonl").read_text().count("\n") == 1


def kmock_forbidden() -> Exception:
    return kmock.KubernetesError(status=403, reason="Forbidden", message="forbidden by RBAC", details={})
