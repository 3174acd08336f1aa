"""Serving and client certificates for the metrics API server, made with the `openssl` CLI.

Owned here because an aggregated API server must speak HTTPS (kube-aggregator dials the APIService's Service over TLS,
`apiregistration/v1` `APIServiceSpec.caBundle` / `insecureSkipTLSVerify`): when the
operator mounts no serving certificate, the adapter generates a self-signed one at start (the
APIService then uses `insecureSkipTLSVerify: true`, or the caBundle printed from it). The same
helpers issue CA-signed certificates for tests and the local demo (a stand-in front-proxy CA).
The `cryptography` package is not a dependency of this project, so the OpenSSL CLI (present on
every Debian/Ubuntu/distroless-debug image we build from) is used.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_DEFAULT_DAYS = 365


class CertError(RuntimeError):
    """openssl is missing or failed."""


@dataclass(frozen=True)
class CertPair:
    cert_file: Path
    key_file: Path

    def cert_pem(self) -> str:
        return self.cert_file.read_text()


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise CertError("the openssl CLI is needed to generate certificates; mount a serving cert instead")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CertError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def _san(hosts: tuple[str, ...]) -> str:
    parts = []
    for h in hosts:
        is_ip = h.replace(".", "").isdigit() or ":" in h
        parts.append(f"IP:{h}" if is_ip else f"DNS:{h}")
    return "subjectAltName=" + ",".join(parts)


def self_signed(
    directory: Path,
    *,
    common_name: str = "tfserving-autoscaler",
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    days: int = _DEFAULT_DAYS,
    stem: str = "serving",
) -> CertPair:
    """A self-signed serving certificate (it is its own CA) valid for `hosts`."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
        "-keyout", str(pair.key_file), "-out", str(pair.cert_file), "-days", str(days),
        "-subj", f"/CN={common_name}", "-addext", _san(hosts),
        "-addext", "basicConstraints=critical,CA:TRUE",
    )  # fmt: skip
    pair.key_file.chmod(0o600)
    return pair


def issue(
    ca: CertPair,
    directory: Path,
    *,
    common_name: str,
    stem: str,
    hosts: tuple[str, ...] = (),
    client: bool = False,
    days: int = _DEFAULT_DAYS,
) -> CertPair:
    """A certificate signed by `ca` (a client cert when `client`, else a server cert for `hosts`)."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    csr = directory / f"{stem}.csr"
    ext = directory / f"{stem}.ext"
    usage = "extendedKeyUsage=clientAuth" if client else "extendedKeyUsage=serverAuth"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment", usage]
    if hosts:
        lines.append(_san(hosts))
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pair.key_file),
        "-out", str(csr), "-subj", f"/CN={common_name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert_file), "-CAkey", str(ca.key_file),
        "-CAcreateserial", "-out", str(pair.cert_file), "-days", str(days), "-sha256",
        "-extfile", str(ext),
    )  # fmt: skip
    pair.key_file.chmod(0o600)
    return pair
