"""`tfserving-autoscaler emulate`: start TF Serving emulator replicas on 127.0.0.1 and print their URLs.

Owns the command line of the emulator: N replicas of one model (batching parameters, service
profile and model name from a spec file when given), optional gRPC ports, a fake DCGM exporter,
and an optional Poisson load against them. Runs until `--duration-s` elapses or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json

from autoscaler.emulator import EmulatorReplica, FakeDcgmExporter, ReplicaConfig, poisson_arrivals, replay
from autoscaler.spec.types import BatchingParams, ServedModel, ServiceProfile


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replicas", type=int, default=1, help="number of replicas (default 1)")
    parser.add_argument("--model", default=None, help="model name (default: the spec's, else resnet)")
    parser.add_argument(
        "--port", type=int, default=8501, help="REST port of the first replica; +1 for each next (0: any)"
    )
    parser.add_argument(
        "--grpc-port", type=int, default=None, help="gRPC port of the first replica (needs tensorflow-serving-api)"
    )
    parser.add_argument("--dcgm-port", type=int, default=None, help="also serve a fake DCGM exporter on this port")
    parser.add_argument("--spec", default=None, help="ServingAutoscaler spec file (batching, profile, model)")
    parser.add_argument("--namespace", default="default", help="namespace label on the metrics (default: default)")
    parser.add_argument("--startup-delay-s", type=float, default=0.0, help="LOADING time before AVAILABLE")
    parser.add_argument("--time-scale", type=float, default=1.0, help="k: serve k times faster than the profile")
    parser.add_argument("--rate-rps", type=float, default=0.0, help="also send Poisson load at this rate")
    parser.add_argument("--duration-s", type=float, default=None, help="stop after this many seconds")


async def _main(args: argparse.Namespace) -> int:
    model = args.model or "resnet"
    batching, profile = BatchingParams(), ServiceProfile()
    other: tuple[ServedModel, ...] = ()
    if args.spec:
        from autoscaler.spec import load_spec

        spec = load_spec(args.spec)
        model = args.model or spec.target.model_name
        batching, profile = spec.batching.initial, spec.profile
        if spec.target.models and not args.model:  # a multi-model server: every model of the spec
            first, *rest = spec.target.models
            profile = first.profile or spec.profile
            other = tuple(ServedModel(m.name, profile=m.profile or spec.profile) for m in rest)
    replicas: list[EmulatorReplica] = []
    for i in range(args.replicas):
        port = 0 if args.port == 0 else args.port + i
        grpc_port = None if args.grpc_port is None else (0 if args.grpc_port == 0 else args.grpc_port + i)
        cfg = ReplicaConfig(
            model_name=model,
            batching=batching,
            profile=profile,
            startup_delay_s=args.startup_delay_s,
            time_scale=args.time_scale,
            port=port,
            grpc_port=grpc_port,
            namespace=args.namespace,
            pod=f"{model}-emulator-{i}",
            other_models=other,
        )
        replicas.append(await EmulatorReplica(cfg).start())
    dcgm = None
    if args.dcgm_port is not None:
        dcgm = await FakeDcgmExporter(replicas, port=args.dcgm_port).start()
    for r in replicas:
        grpc = f" grpc=127.0.0.1:{r.grpc_port}" if r.grpc_port else ""
        models = ",".join(r.config.served())  # a multi-model server: /v1/models/<m> for each
        print(f"{r.pod} {r.url}/v1/models/{models} metrics={r.url}/monitoring/prometheus/metrics{grpc}", flush=True)
    if dcgm is not None:
        print(f"dcgm {dcgm.url}/metrics", flush=True)
    try:
        if args.rate_rps > 0:
            duration = args.duration_s if args.duration_s is not None else 3600.0
            res = await replay(
                poisson_arrivals(args.rate_rps, duration), lambda: [r.url for r in replicas if r.ready], model=model
            )
            print(json.dumps(res.summary()), flush=True)
        elif args.duration_s is not None:
            await asyncio.sleep(args.duration_s)
        else:
            await asyncio.Event().wait()
    finally:
        if dcgm is not None:
            await dcgm.stop()
        for r in replicas:
            await r.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_main(args))
    return 130
