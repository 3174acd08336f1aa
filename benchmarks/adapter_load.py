"""Load benchmark of the metrics API: the adapter vs a bare aiohttp hello-world, driven by `wrk`.

Starts, in one run, on 127.0.0.1 only: a hello-world aiohttp app (HTTP), the adapter over HTTP, and
the adapter over HTTPS (TLS with keep-alive; requestheader auth off, because wrk cannot present a
client certificate). Each is driven by `wrk -t2 -c<conns> -d<duration>s --latency` with the request
the HPA makes (an External-metric read with a label selector, and a Pods-metric read). Prints a
rich table and writes benchmarks/results/adapter_load.json. Goal: >= 2,000 req/s, p99 <= 10 ms.

    .venv/bin/python benchmarks/adapter_load.py [--duration 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from aiohttp import web
from rich.console import Console
from rich.table import Table

from autoscaler.adapter import certs
from autoscaler.adapter.auth import server_ssl_context
from autoscaler.adapter.metrics_api import create_app
from autoscaler.core.store import DecisionStore, PodSignals
from autoscaler.core.types import Binding, Decision, TargetKey
from autoscaler.spec.types import BatchingParams

NOW_S = 1_780_000_000.0
N_TARGETS = 50
PODS_PER_TARGET = 8
RESULTS = Path(__file__).resolve().parent / "results" / "adapter_load.json"
GOAL_RPS = 2_000.0
GOAL_P99_MS = 10.0


def filled_store() -> DecisionStore:
    store = DecisionStore()
    for i in range(N_TARGETS):
        t = TargetKey("serving", f"model-{i}")
        d = Decision(
            target=t, time_s=NOW_S, desired_replicas=1 + i % 17, current_replicas=1, valid=True, reason="bench",
            binding=Binding.NONE, batching=BatchingParams(), forecast_rps=100.0 + i, capacity_rps=25.0,
        )  # fmt: skip
        store.put_decision(t, f"model-{i}", d, labels={"app": f"tfs-model-{i}"})
        pods = tuple(
            PodSignals(f"model-{i}-{j}", request_rate_rps=10.0 + j, latency_ms=20.0, batch_fill=0.4, time_s=NOW_S)
            for j in range(PODS_PER_TARGET)
        )
        store.put_pods(t, f"model-{i}", pods)
    return store


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, world")


def hello_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _hello)
    return app


class Served:
    """An aiohttp app on its own event loop thread, 127.0.0.1, ephemeral port."""

    def __init__(self, app: web.Application, ssl_ctx: Any = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = web.AppRunner(app, access_log=None)
        self.port = asyncio.run_coroutine_threadsafe(self._start(ssl_ctx), self.loop).result(10)

    async def _start(self, ssl_ctx: Any) -> int:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_ctx)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {f"p{int(p)}_ms": _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx_m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors_m = re.search(r"Socket errors: (.*)", out)
    return {
        "requests_per_s": rps,
        **pct,
        "requests": total,
        "non_2xx": int(non2xx_m.group(1)) if non2xx_m else 0,
        "socket_errors": errors_m.group(1).strip() if errors_m else "",
    }


def run_wrk(url: str, duration_s: int, connections: int) -> dict[str, Any]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "2s", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration_s + 30).stdout
    return {"command": " ".join(cmd), **parse_wrk(out)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])  # type: ignore[union-attr]
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    store = filled_store()
    ext = "/apis/external.metrics.k8s.io/v1beta1/namespaces/serving/tfserving_autoscaler_desired_replicas"
    pods = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/serving/pods/*/tfserving_request_rate"
    ext_q, pods_q = "?labelSelector=deployment%3Dmodel-7", "?labelSelector=app%3Dtfs-model-7"
    tmp = Path(tempfile.mkdtemp(prefix="adapter-bench-"))
    pair = certs.self_signed(tmp, hosts=("127.0.0.1",))
    tls_ctx = server_ssl_context(str(pair.cert_file), str(pair.key_file), None)

    servers = {
        "hello": Served(hello_app()),
        "adapter-http": Served(create_app(store, now_s=lambda: NOW_S)),
        "adapter-https": Served(create_app(store, now_s=lambda: NOW_S), tls_ctx),
    }
    cases = [
        ("hello-world (aiohttp, HTTP)", f"http://127.0.0.1:{servers['hello'].port}/"),
        ("adapter external metric (HTTP)", f"http://127.0.0.1:{servers['adapter-http'].port}{ext}{ext_q}"),
        ("adapter pods metric (HTTP)", f"http://127.0.0.1:{servers['adapter-http'].port}{pods}{pods_q}"),
        ("adapter external metric (HTTPS)", f"https://127.0.0.1:{servers['adapter-https'].port}{ext}{ext_q}"),
    ]
    results: list[dict[str, Any]] = []
    try:
        for name, url in cases:
            results.append({"case": name, "url": url, **run_wrk(url, args.duration, args.connections)})
    finally:
        for s in servers.values():
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)

    hello_rps = results[0]["requests_per_s"]
    for r in results:
        r["ratio_to_hello"] = round(r["requests_per_s"] / hello_rps, 3)
        r["meets_goal"] = bool(
            r["requests_per_s"] >= GOAL_RPS and r.get("p99_ms", 1e9) <= GOAL_P99_MS and r["non_2xx"] == 0
        )
    table = Table(title=f"metrics API under wrk (-t2 -c{args.connections} -d{args.duration}s, loopback)")
    for col in ("case", "req/s", "p50 ms", "p90 ms", "p99 ms", "non-2xx", "x hello", "goal"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for r in results:
        table.add_row(
            r["case"], f"{r['requests_per_s']:,.0f}", f"{r.get('p50_ms', float('nan')):.2f}",
            f"{r.get('p90_ms', float('nan')):.2f}", f"{r.get('p99_ms', float('nan')):.2f}", str(r["non_2xx"]),
            f"{r['ratio_to_hello']:.2f}", "yes" if r["meets_goal"] else "NO",
        )  # fmt: skip
    Console().print(table)
    doc = {
        "goal": {"requests_per_s": GOAL_RPS, "p99_ms": GOAL_P99_MS},
        "setup": {
            "targets": N_TARGETS,
            "pods_per_target": PODS_PER_TARGET,
            "duration_s": args.duration,
            "connections": args.connections,
            "threads": 2,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "note": "HTTPS run has requestheader auth off: wrk cannot present a client certificate",
        },
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0 if all(r["meets_goal"] for r in results[1:]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
