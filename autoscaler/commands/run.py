"""`tfserving-autoscaler run`: the in-cluster daemon (the composition of runtime + adapter).

Owns the command line and the wiring that needs both the runtime and the adapter (siblings that
must not import each other): the metrics API (custom/external metrics for the HPA) and the KEDA
external scaler are started here and handed to the runtime as server factories.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket

from autoscaler.actuators.status import CrStatusWriter
from autoscaler.runtime.app import Closer, Daemon, ServerFactory, Servers
from autoscaler.runtime.clock import WallClock
from autoscaler.runtime.logs import setup_json_logging

log = logging.getLogger(__name__)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec-dir", default=None, help="directory of spec files (a mounted ConfigMap), hot-reloaded")
    parser.add_argument("--spec", action="append", default=[], help="a spec file (repeatable)")
    parser.add_argument("--no-crd", action="store_true", help="do not read ServingAutoscaler custom resources")
    parser.add_argument("--prometheus-url", default=os.environ.get("PROMETHEUS_URL"), help="Prometheus base URL")
    parser.add_argument(
        "--direct-scrape",
        action="store_true",
        help="no Prometheus: discover each Deployment's pods and scrape TF Serving directly",
    )
    parser.add_argument(
        "--model-status",
        choices=("rest", "grpc", "off"),
        default="rest",
        help="ask every pod for TF Serving's model status (REST /v1/models/<m> or gRPC GetModelStatus, "
        "which needs the 'tfserving' extra): pods count as ready once their model is AVAILABLE",
    )
    parser.add_argument(
        "--model-status-timeout-s", type=float, default=1.0, help="bound on one tick's model-status calls"
    )
    parser.add_argument("--metrics-host", default="0.0.0.0")
    parser.add_argument("--metrics-port", type=int, default=9090, help="/metrics, /healthz, /readyz")
    parser.add_argument("--adapter-port", type=int, default=None, help="serve the custom/external metrics API here")
    parser.add_argument("--adapter-host", default="0.0.0.0", help="listen address of the adapter and KEDA scaler")
    parser.add_argument(
        "--adapter-insecure", action="store_true", help="plain HTTP, no requestheader auth (tests/local only)"
    )
    parser.add_argument("--adapter-cert", default=None, help="serving certificate (PEM); self-signed if omitted")
    parser.add_argument("--adapter-key", default=None, help="serving key (PEM)")
    parser.add_argument("--keda-port", type=int, default=None, help="serve the KEDA external scaler (gRPC) here")
    parser.add_argument("--keda-cert", default=None, help="KEDA scaler TLS certificate (default: --adapter-cert)")
    parser.add_argument("--keda-key", default=None, help="KEDA scaler TLS key (default: --adapter-key)")
    parser.add_argument(
        "--keda-client-ca", default=None, help="require KEDA client certificates signed by this CA (PEM)"
    )
    parser.add_argument("--keda-insecure", action="store_true", help="plaintext gRPC for KEDA (tests/local only)")
    parser.add_argument("--leader-elect", action="store_true", help="only the Lease holder actuates")
    parser.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "default"))
    parser.add_argument("--lease-name", default="tfserving-autoscaler")
    parser.add_argument("--identity", default=os.environ.get("POD_NAME") or socket.gethostname())
    parser.add_argument("--lease-duration-s", type=float, default=15.0)
    parser.add_argument("--renew-deadline-s", type=float, default=10.0)
    parser.add_argument("--retry-period-s", type=float, default=2.0)
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster, then ~/.kube/config)")
    parser.add_argument("--period-s", type=float, default=None, help="override every spec's decision period")
    parser.add_argument("--spec-poll-s", type=float, default=5.0)
    parser.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace) -> int:
    setup_json_logging(args.log_level)
    if not args.spec_dir and not args.spec and args.no_crd:
        log.error("no spec source: give --spec-dir, --spec or allow the CRD")
        return 2
    if not args.prometheus_url and not args.direct_scrape:
        log.error("give --prometheus-url (or PROMETHEUS_URL), or --direct-scrape")
        return 2
    from autoscaler.runtime.kube import NoClusterConfig

    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        pass
    except NoClusterConfig as exc:  # one line, no traceback: what is missing and how to fix it
        log.error(str(exc))
        return 2
    return 0


async def _main(args: argparse.Namespace) -> None:
    from autoscaler.core.store import DecisionStore
    from autoscaler.runtime.discovery import PodDiscoveringSource, PodLister
    from autoscaler.runtime.factory import prometheus_history
    from autoscaler.runtime.forecast_pool import ForecastPool
    from autoscaler.runtime.kube import build_kube_parts
    from autoscaler.runtime.leader import LeaderConfig
    from autoscaler.runtime.loop import ControlLoop
    from autoscaler.runtime.model_status import ModelStatusSource
    from autoscaler.runtime.specwatch import SpecErrorReporter, SpecWatcher
    from autoscaler.runtime.telemetry import Telemetry
    from autoscaler.sources.model_status import ModelStatusPoller
    from autoscaler.sources.prometheus import PrometheusSource
    from autoscaler.sources.scrape import ScrapeSource

    clock = WallClock()
    pool = ForecastPool()  # statsmodels runs in its own process, never on the event loop
    store = DecisionStore()
    telemetry = Telemetry(store)
    leader = (
        LeaderConfig(
            identity=args.identity,
            namespace=args.lease_namespace,
            name=args.lease_name,
            lease_duration_s=args.lease_duration_s,
            renew_deadline_s=args.renew_deadline_s,
            retry_period_s=args.retry_period_s,
        )
        if args.leader_elect
        else None
    )
    kube = build_kube_parts(clock, kubeconfig=args.kubeconfig, identity=args.identity, leader=leader)
    source: PrometheusSource | PodDiscoveringSource | ModelStatusSource
    if args.prometheus_url:
        source = PrometheusSource(args.prometheus_url)
    else:
        source = PodDiscoveringSource(kube.api_client, ScrapeSource())
    if args.model_status != "off":
        source = ModelStatusSource(
            source,
            ModelStatusPoller(timeout_s=args.model_status_timeout_s, protocol=args.model_status),
            lister=None if isinstance(source, PodDiscoveringSource) else PodLister(kube.api_client),
            events=kube.events,
            is_leader=kube.is_leader(),
        )
    loop = ControlLoop(
        clock=clock,
        source=source,
        actuator=kube.actuator,
        telemetry=telemetry,
        is_leader=kube.is_leader(),
        forecaster_factory=pool.driver,
        period_s=args.period_s,
        history=prometheus_history(args.prometheus_url) if args.prometheus_url else None,
        status_writer=None if args.no_crd else CrStatusWriter(kube.api_client),
    )
    reporter = SpecErrorReporter(telemetry, clock, kube.events)
    watcher = SpecWatcher(
        clock=clock,
        on_change=loop.set_specs,
        directory=args.spec_dir,
        files=args.spec,
        list_crs=None if args.no_crd else kube.list_crs,
        on_error=reporter.error,
        on_clear=reporter.clear,
        interval_s=args.spec_poll_s,
    )
    extra: list[ServerFactory] = []
    if args.adapter_port is not None:

        async def adapter() -> tuple[str, Closer]:
            from autoscaler.adapter.auth import RequestHeaderAuth
            from autoscaler.adapter.authz import CachingAuthorizer
            from autoscaler.adapter.metrics_api import serve
            from autoscaler.runtime.kube import SubjectAccessReviewer, read_configmap_data

            auth = None
            authz = None
            if not args.adapter_insecure:  # fail closed: no front-proxy CA, no adapter
                data = await asyncio.to_thread(
                    read_configmap_data, kube.api_client, "kube-system", "extension-apiserver-authentication"
                )
                auth = RequestHeaderAuth.from_configmap_data(data)
                authz = CachingAuthorizer(SubjectAccessReviewer(kube.api_client))  # who may read which namespace
            srv = await serve(
                store,
                now_s=clock.now_s,
                host=args.adapter_host,
                port=args.adapter_port,
                tls=not args.adapter_insecure,
                cert_file=args.adapter_cert,
                key_file=args.adapter_key,
                auth=auth,
                authz=authz,
            )
            return srv.url, srv.close

        extra.append(adapter)
    if args.keda_port is not None:

        async def keda() -> tuple[str, Closer]:
            from autoscaler.adapter.keda_scaler import start_keda_scaler

            creds = None if args.keda_insecure else _keda_credentials(args)
            srv = await start_keda_scaler(
                store, args.keda_port, now_s=clock.now_s, host=args.adapter_host, credentials=creds
            )
            return f"{'grpc' if creds is None else 'grpcs'}://{args.adapter_host}:{srv.port}", srv.stop

        extra.append(keda)
    daemon = Daemon(
        clock=clock,
        loop=loop,
        watcher=watcher,
        elector=kube.elector,
        servers=Servers(metrics_host=args.metrics_host, metrics_port=args.metrics_port, extra=extra),
    )
    await asyncio.to_thread(pool.start)
    daemon.install_signal_handlers()
    try:
        await daemon.run()
    finally:
        source.close()
        pool.close()


def _keda_credentials(args: argparse.Namespace) -> object:
    """TLS for the KEDA scaler: its own cert, else the adapter's, else a self-signed one."""
    import tempfile
    from pathlib import Path

    from autoscaler.adapter.certs import self_signed
    from autoscaler.adapter.keda_scaler import server_credentials

    cert, key = args.keda_cert or args.adapter_cert, args.keda_key or args.adapter_key
    if not (cert and key):
        pair = self_signed(Path(tempfile.mkdtemp(prefix="tfs-keda-certs-")))
        cert, key = str(pair.cert_file), str(pair.key_file)
        log.info("KEDA scaler: generated a self-signed serving certificate", extra={"cert": cert})
    if not args.keda_client_ca:
        log.warning("KEDA scaler: no --keda-client-ca; any client that reaches the port may read decisions")
    return server_credentials(cert, key, args.keda_client_ca)
