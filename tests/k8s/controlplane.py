"""A real Kubernetes v1.20.2 control plane on loopback: etcd + kube-apiserver + kube-controller-manager.

Owns the e2e suite's cluster. The binaries are built once from Debian bookworm's `kubernetes` source
package by scripts/k8s-control-plane/build.sh and cached under
`~/.cache/tfserving-autoscaler/k8s-1.20.2/bin` (override with `TFSA_K8S_CACHE`); etcd is Debian's
`etcd-server`. `ControlPlane.start()` generates the certificates with the openssl CLI (a cluster CA
with a 127.0.0.1 serving cert and a `system:masters` admin client cert, a separate front-proxy CA and
client cert, an RSA key for ServiceAccount tokens), starts the three processes on free loopback
ports, each in its own process group, and waits for `/readyz`; `stop()` kills the groups, so no
process outlives the session even when a test fails.

Flags follow the upstream local-cluster script (hack/local-up-cluster.sh in kubernetes v1.20.2) cut
down to what runs without a kubelet: pods stay Pending unless a test plays the kubelet through the
pods/status subresource. The controller manager runs only the controllers the tests need, with
per-controller ServiceAccount credentials (`--use-service-account-credentials`), so the HPA
controller reads metrics as `system:serviceaccount:kube-system:horizontal-pod-autoscaler`, as in a
real cluster, and the real RBAC authorizer decides what it may read.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

K8S_VERSION = "1.20.2"
CACHE_DIR = Path(
    os.environ.get("TFSA_K8S_CACHE") or Path.home() / ".cache" / "tfserving-autoscaler" / f"k8s-{K8S_VERSION}"
)
BIN_DIR = CACHE_DIR / "bin"
APISERVER_BIN = BIN_DIR / "kube-apiserver"
CONTROLLER_MANAGER_BIN = BIN_DIR / "kube-controller-manager"
ETCD_BIN = shutil.which("etcd") or "/usr/bin/etcd"
BUILD_SCRIPT = "scripts/k8s-control-plane/build.sh"
BUILD_REV = "reflect2-1.0.2"  # must equal BUILD_REV in the build script (binaries of an older build crash)
HPA_SYNC_PERIOD_S = 5.0  # --horizontal-pod-autoscaler-sync-period


def missing_binaries() -> str | None:
    """Why the control plane cannot start here (one line), or None when everything is in place."""
    missing = [str(p) for p in (APISERVER_BIN, CONTROLLER_MANAGER_BIN) if not os.access(p, os.X_OK)]
    rev_file = BIN_DIR / "BUILD_REV"
    if not missing and (not rev_file.exists() or rev_file.read_text().strip() != BUILD_REV):
        missing.append(f"build revision {BUILD_REV} (rebuild)")
    if not os.access(ETCD_BIN, os.X_OK):
        missing.append("etcd (Debian package etcd-server)")
    if shutil.which("openssl") is None:
        missing.append("openssl")
    if not missing:
        return None
    return f"Kubernetes {K8S_VERSION} binaries missing ({', '.join(missing)}); build them with {BUILD_SCRIPT}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()[-500:]}")


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path

    def b64_cert(self) -> str:
        return base64.b64encode(self.cert.read_bytes()).decode()


def make_ca(directory: Path, name: str) -> Pem:
    pem = Pem(directory / f"{name}.crt", directory / f"{name}.key")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3",
        "-keyout", str(pem.key), "-out", str(pem.cert), "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return pem


def issue_cert(
    ca: Pem, directory: Path, stem: str, *, cn: str, orgs: tuple[str, ...] = (), hosts: tuple[str, ...] = ()
) -> Pem:
    """A leaf signed by `ca`: a serving cert when `hosts` is given, else a client cert (CN user, O groups)."""
    pem = Pem(directory / f"{stem}.crt", directory / f"{stem}.key")
    subj = "/" + "/".join([*(f"O={o}" for o in orgs), f"CN={cn}"])
    ext = directory / f"{stem}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
    if hosts:
        sans = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
        lines += ["extendedKeyUsage=serverAuth", f"subjectAltName={sans}"]
    else:
        lines.append("extendedKeyUsage=clientAuth")
    ext.write_text("\n".join(lines) + "\n")
    csr = directory / f"{stem}.csr"
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pem.key), "-out", str(csr), "-subj", subj)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
        "-out", str(pem.cert), "-days", "3", "-sha256", "-extfile", str(ext),
    )  # fmt: skip
    return pem


def kubeconfig(path: Path, server: str, ca: Path, *, client: Pem | None = None, token: str | None = None) -> Path:
    """Write a kubeconfig for one user (client cert or bearer token) and return its path."""
    user: dict[str, str] = {}
    if client is not None:
        user = {"client-certificate": str(client.cert), "client-key": str(client.key)}
    if token is not None:
        user = {"token": token}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "u"}}],
        "current-context": "e2e",
    }
    path.write_text(json.dumps(doc))
    return path


class _Proc:
    """One child in its own process group (its children die with it)."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name, self.log = name, log
        self._log_fh = log.open("wb")
        self.popen = subprocess.Popen(
            args, stdout=self._log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        self._log_fh.close()


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager v1.20.2 on 127.0.0.1, in `workdir`."""

    def __init__(self, workdir: Path, *, hpa_sync_period_s: float = HPA_SYNC_PERIOD_S) -> None:
        self.workdir = workdir
        self.pki = workdir / "pki"
        self.hpa_sync_period_s = hpa_sync_period_s
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._procs: list[_Proc] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout_s: float = 180.0) -> ControlPlane:
        try:
            self._certs()
            self._start_etcd(timeout_s)
            self._start_apiserver(timeout_s)
            self._start_controller_manager(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- pieces ------------------------------------------------------------------------------
    def _certs(self) -> None:
        self.pki.mkdir(parents=True, exist_ok=True)
        self.ca = make_ca(self.pki, "cluster-ca")
        self.serving = issue_cert(
            self.ca, self.pki, "apiserver", cn="kube-apiserver", hosts=("127.0.0.1", "localhost", "kubernetes")
        )
        self.admin = issue_cert(self.ca, self.pki, "admin", cn="e2e-admin", orgs=("system:masters",))
        self.front_proxy_ca = make_ca(self.pki, "front-proxy-ca")
        self.front_proxy_client = issue_cert(
            self.front_proxy_ca, self.pki, "front-proxy-client", cn="front-proxy-client"
        )
        self.sa_key = self.pki / "sa.key"
        _openssl("genrsa", "-out", str(self.sa_key), "2048")
        self.sa_pub = self.pki / "sa.pub"
        _openssl("rsa", "-in", str(self.sa_key), "-pubout", "-out", str(self.sa_pub))
        self.admin_kubeconfig = kubeconfig(self.workdir / "admin.kubeconfig", self.url, self.ca.cert, client=self.admin)

    def _spawn(self, name: str, args: list[str]) -> _Proc:
        proc = _Proc(name, args, self.workdir / f"{name}.log")
        self._procs.append(proc)
        return proc

    def _wait(self, proc: _Proc, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
            if ready():
                return
            time.sleep(0.25)
        raise TimeoutError(f"{proc.name} not ready after {timeout_s:g}s:\n{proc.tail()}")

    def _start_etcd(self, timeout_s: float) -> None:
        self.etcd_url = f"http://127.0.0.1:{free_port()}"
        peer = f"http://127.0.0.1:{free_port()}"
        proc = self._spawn(
            "etcd",
            [
                ETCD_BIN, "--name", "e2e", "--data-dir", str(self.workdir / "etcd"),
                "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"e2e={peer}", "--log-level", "warn",
            ],
        )  # fmt: skip

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as r:
                    return bool(json.loads(r.read()).get("health") == "true")
            except (urllib.error.URLError, OSError, ValueError):
                return False

        self._wait(proc, healthy, timeout_s)

    def _start_apiserver(self, timeout_s: float) -> None:
        proc = self._spawn(
            "kube-apiserver",
            [
                str(APISERVER_BIN), "--etcd-servers", self.etcd_url,
                "--secure-port", str(self.port), "--insecure-port", "0",
                "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
                "--client-ca-file", str(self.ca.cert),
                "--tls-cert-file", str(self.serving.cert), "--tls-private-key-file", str(self.serving.key),
                "--authorization-mode", "Node,RBAC", "--service-cluster-ip-range", "127.1.0.0/24",
                "--service-account-key-file", str(self.sa_pub),
                "--service-account-signing-key-file", str(self.sa_key),
                "--service-account-issuer", "https://kubernetes.default.svc",
                "--requestheader-client-ca-file", str(self.front_proxy_ca.cert),
                "--requestheader-allowed-names", "front-proxy-client",
                "--requestheader-username-headers", "X-Remote-User",
                "--requestheader-group-headers", "X-Remote-Group",
                "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
                "--proxy-client-cert-file", str(self.front_proxy_client.cert),
                "--proxy-client-key-file", str(self.front_proxy_client.key),
                "--enable-aggregator-routing=false",
                "--audit-log-path", str(self.audit_log), "--audit-policy-file", str(self._audit_policy()),
                "--audit-log-format", "json",
            ],
        )  # fmt: skip
        self._wait(proc, lambda: self._get_text("/readyz") == "ok", timeout_s)

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def _audit_policy(self) -> Path:
        """Log every write (metadata; scale writes with their body) and no read: who changed what, in order."""
        path = self.workdir / "audit-policy.yaml"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived"],
                    "rules": [
                        {  # replica writes with their body: who set spec.replicas to what, when
                            "level": "Request",
                            "verbs": ["update", "patch"],
                            "resources": [{"group": "apps", "resources": ["deployments/scale"]}],
                        },
                        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete"]},
                        {"level": "None"},
                    ],
                }
            )
        )
        return path

    def audit_events(self) -> list[dict[str, Any]]:
        """The apiserver's audit log so far (ResponseComplete events of writes)."""
        if not self.audit_log.exists():
            return []
        out = []
        for line in self.audit_log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line being written right now
                continue
        return out

    def writes(self, resource: str, namespace: str, name: str) -> list[tuple[float, str, str, int]]:
        """Every write to one object (`resource` like "leases" or "deployments/scale"), in order:
        (wall time s, user, verb, HTTP status)."""
        res, _, sub = resource.partition("/")
        out = []
        for ev in self.audit_events():
            ref = ev.get("objectRef") or {}
            if (ref.get("resource"), ref.get("subresource") or "", ref.get("namespace"), ref.get("name")) != (
                res,
                sub,
                namespace,
                name,
            ) or ev.get("stage") != "ResponseComplete":
                continue
            t = dt.datetime.fromisoformat(ev["requestReceivedTimestamp"]).timestamp()
            user = str((ev.get("user") or {}).get("username"))
            out.append((t, user, str(ev.get("verb")), int((ev.get("responseStatus") or {}).get("code", 0))))
        return sorted(out)

    def scale_writes(self, namespace: str, name: str) -> list[tuple[float, str, int | None]]:
        """Successful writes of the Deployment's scale subresource: (wall time s, user, spec.replicas)."""
        out = []
        for ev in self.audit_events():
            ref = ev.get("objectRef") or {}
            if (ref.get("resource"), ref.get("subresource"), ref.get("namespace"), ref.get("name")) != (
                "deployments",
                "scale",
                namespace,
                name,
            ):
                continue
            if ev.get("stage") != "ResponseComplete" or (ev.get("responseStatus") or {}).get("code", 500) >= 300:
                continue
            # JSON bodies are logged; protobuf ones (kube-controller-manager's clients) are not: None
            replicas = ((ev.get("requestObject") or {}).get("spec") or {}).get("replicas")
            t = dt.datetime.fromisoformat(ev["requestReceivedTimestamp"]).timestamp()
            user = str((ev.get("user") or {}).get("username"))
            out.append((t, user, int(replicas) if replicas is not None else None))
        return sorted(out, key=lambda w: w[0])

    def _start_controller_manager(self, timeout_s: float) -> None:
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(CONTROLLER_MANAGER_BIN), "--kubeconfig", str(self.admin_kubeconfig),
                "--authentication-kubeconfig", str(self.admin_kubeconfig),
                "--authorization-kubeconfig", str(self.admin_kubeconfig),
                "--secure-port", "0", "--port", "0", "--leader-elect=false",
                "--controllers", "horizontalpodautoscaling,deployment,replicaset,garbagecollector,namespace,"
                "serviceaccount,serviceaccount-token",
                "--use-service-account-credentials",
                "--service-account-private-key-file", str(self.sa_key), "--root-ca-file", str(self.ca.cert),
                "--horizontal-pod-autoscaler-sync-period", f"{self.hpa_sync_period_s:g}s",
            ],
        )  # fmt: skip
        # ready when the serviceaccount controller made kube-system/default and its token controller
        # gave the HPA controller's ServiceAccount a token (per-controller credentials start after that)
        self._wait(proc, self._controllers_have_tokens, timeout_s)

    def _controllers_have_tokens(self) -> bool:
        doc = self.get_json("/api/v1/namespaces/kube-system/serviceaccounts/horizontal-pod-autoscaler")
        return bool(doc and doc.get("secrets")) and bool(
            self.get_json("/api/v1/namespaces/default/serviceaccounts/default")
        )

    # -- admin HTTP helpers (stdlib, so the harness works before any client is configured) ---
    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        ctx.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        return ctx

    def request(self, path: str, client: Pem | None = None) -> tuple[int, str]:
        """GET `path` as `client` (default: the admin): (HTTP status, body)."""
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        who = client or self.admin
        ctx.load_cert_chain(str(who.cert), str(who.key))
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=10, context=ctx) as r:
                return int(r.status), str(r.read().decode())
        except urllib.error.HTTPError as exc:
            return int(exc.code), str(exc.read().decode())

    def _get_text(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=5, context=self._ssl()) as r:
                return str(r.read().decode())
        except (urllib.error.URLError, OSError):
            return None

    def get_json(self, path: str) -> Any:
        text = self._get_text(path)
        return json.loads(text) if text else None
