"""Spec sources for the daemon: a mounted ConfigMap directory (hot reload) and the CRD.

Files: every `*.yaml|*.yml|*.json` not starting with `.` in the directory is polled. A file's
fingerprint is (realpath, mtime_ns, size, inode) taken through its symlinks, so the atomic
`..data` symlink swap a ConfigMap volume does on update is seen even though the visible names
never change. A file that fails to parse keeps the *last good* specs it produced, and the error
is reported through `on_error` (the app logs it, sets the error metric and emits a SpecInvalid
Event on the affected Deployments); when the file is fixed the error clears.

CRD: when a lister is given, `ServingAutoscaler` objects (`autoscaling.tfserving.dev/v1alpha1`,
plural `servingautoscalers`) are listed every poll via CustomObjectsApi; a 404 means the CRD is
not installed, which is logged once and skipped. A custom resource may only target its own
namespace (tenants must not steer each other's Deployments); the daemon's own spec files (the
operator's ConfigMap) may name any namespace.

Duplicates: a target defined by two specs (two sources, or twice in one file) is an error on every
source involved (log line, spec-errors gauge, SpecInvalid Event), and no order decides silently
which wins: the spec that was already serving the target keeps serving it until only one remains;
if none was (both appeared together), neither is applied.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.actuators.events import SPEC_INVALID, EventRecorder, InvolvedObject
from autoscaler.core.types import TargetKey
from autoscaler.runtime.clock import Clock, sleep_or_stop
from autoscaler.runtime.telemetry import Telemetry
from autoscaler.spec import SpecError, load_specs, parse_spec
from autoscaler.spec.types import API_VERSION, KIND, ServingAutoscalerSpec

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")
CRD_GROUP = "autoscaling.tfserving.dev"
CRD_VERSION = "v1alpha1"
CRD_PLURAL = "servingautoscalers"

Fingerprint = tuple[str, int, int, int]
ErrorHook = Callable[[str, list[str], list[ServingAutoscalerSpec]], None]
ClearHook = Callable[[str], None]
CrdLister = Callable[[], list[dict[str, Any]] | None]  # None: CRD not installed


@dataclass
class _Source:
    fingerprint: Fingerprint | str | None
    specs: list[ServingAutoscalerSpec]
    error: list[str] | None = None


def _fingerprint(path: Path) -> Fingerprint | None:
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return (real, st.st_mtime_ns, st.st_size, st.st_ino)


def crd_lister(api_client: Any) -> CrdLister:
    """List ServingAutoscaler objects cluster-wide; None when the CRD is not installed (404)."""
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    api = k8s.CustomObjectsApi(api_client)

    def list_crs() -> list[dict[str, Any]] | None:
        try:
            doc = api.list_cluster_custom_object(CRD_GROUP, CRD_VERSION, CRD_PLURAL, _request_timeout=10.0)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        items = doc.get("items", []) if isinstance(doc, dict) else []
        return [i for i in items if isinstance(i, dict)]

    return list_crs


def _clean_cr(doc: dict[str, Any]) -> dict[str, Any]:
    meta = doc.get("metadata") or {}
    return {
        "apiVersion": doc.get("apiVersion"),
        "kind": doc.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
        "spec": doc.get("spec"),
    }


def _parse_one(doc: dict[str, Any], source: str) -> list[ServingAutoscalerSpec]:
    return [parse_spec(doc, source, custom_resource=True)]


class SpecWatcher:
    """Polls spec files (and CRs) and hands the merged, de-duplicated spec list to `on_change`."""

    def __init__(
        self,
        *,
        clock: Clock,
        on_change: Callable[[list[ServingAutoscalerSpec]], None],
        directory: str | Path | None = None,
        files: Sequence[str | Path] = (),
        list_crs: CrdLister | None = None,
        on_error: ErrorHook | None = None,
        on_clear: ClearHook | None = None,
        interval_s: float = 5.0,
    ) -> None:
        self._clock = clock
        self._dir = Path(directory) if directory is not None else None
        self._files = [Path(f) for f in files]
        self._list_crs = list_crs
        self._on_change = on_change
        self._on_error = on_error
        self._on_clear = on_clear
        self.interval_s = interval_s
        self._sources: dict[str, _Source] = {}
        self._crd_absent_logged = False
        self._published: list[ServingAutoscalerSpec] | None = None
        self._owner: dict[TargetKey, str] = {}  # which source served each target in the last merge
        self.errors: dict[str, list[str]] = {}  # parse/validation errors per source
        self.conflicts: dict[str, list[str]] = {}  # duplicate-target errors per source

    def _paths(self) -> list[Path]:
        paths = list(self._files)
        if self._dir is not None:
            try:
                paths += sorted(p for p in self._dir.iterdir() if not p.name.startswith(".") and p.suffix in SUFFIXES)
            except OSError as exc:
                log.error("cannot list spec directory", extra={"dir": str(self._dir), "error": str(exc)})
        return paths

    def _set(
        self, source: str, fp: Fingerprint | str | None, loader: Callable[[], list[ServingAutoscalerSpec]]
    ) -> None:
        old = self._sources.get(source)
        if old is not None and old.fingerprint == fp:
            return
        try:
            specs = loader()
        except SpecError as exc:
            self._fail(source, fp, list(exc.problems), old)
            return
        except Exception as exc:  # never let one source stop every later reload
            self._fail(source, fp, [f"{source}: {type(exc).__name__}: {str(exc)[:300]}"], old)
            return
        self._sources[source] = _Source(fp, specs)
        log.info("spec loaded", extra={"source": source, "targets": [s.name for s in specs]})
        if source in self.errors:
            del self.errors[source]
            if self._on_clear is not None and source not in self.conflicts:
                self._on_clear(source)

    def _fail(self, source: str, fp: Fingerprint | str | None, problems: list[str], old: _Source | None) -> None:
        kept = old.specs if old is not None else []
        self._sources[source] = _Source(fp, kept, problems)
        self.errors[source] = problems
        log.error(
            "invalid spec; keeping the last good one",
            extra={"source": source, "problems": problems, "kept": [s.name for s in kept]},
        )
        if self._on_error is not None:
            self._on_error(source, problems, kept)

    def poll(self) -> bool:
        """One pass over all sources (blocking I/O). Returns True if the merged spec list changed."""
        seen: set[str] = set()
        for path in self._paths():
            source = str(path)
            seen.add(source)
            fp = _fingerprint(path)
            if fp is None:
                continue
            self._set(source, fp, functools.partial(load_specs, path))
        if self._list_crs is not None:
            self._poll_crs(seen)
        for gone in [s for s in self._sources if s not in seen]:
            del self._sources[gone]
            if self.errors.pop(gone, None) is not None and self._on_clear is not None:
                self._on_clear(gone)
            log.info("spec source removed", extra={"source": gone})
        merged = self._merge()
        if merged != self._published:
            self._published = merged
            self._on_change(merged)
            return True
        return False

    def _poll_crs(self, seen: set[str]) -> None:
        assert self._list_crs is not None
        try:
            items = self._list_crs()
        except Exception as exc:
            log.warning("cannot list ServingAutoscaler objects", extra={"error": str(exc)[:200]})
            seen.update(s for s in self._sources if s.startswith("cr:"))  # keep what we had
            return
        if items is None:
            if not self._crd_absent_logged:
                log.info("ServingAutoscaler CRD not installed; reading specs from files only")
                self._crd_absent_logged = True
            return
        for item in items:
            meta = item.get("metadata") or {}
            source = f"cr:{meta.get('namespace', '')}/{meta.get('name', '')}"
            seen.add(source)
            fp = f"{meta.get('resourceVersion', '')}/{meta.get('generation', '')}"
            doc = _clean_cr(item)
            self._set(source, fp, functools.partial(_parse_one, doc, source))

    def _merge(self) -> list[ServingAutoscalerSpec]:
        by_key: dict[TargetKey, list[tuple[str, ServingAutoscalerSpec]]] = {}
        for source in sorted(self._sources):
            for spec in self._sources[source].specs:
                by_key.setdefault(TargetKey(spec.target.namespace, spec.target.deployment), []).append((source, spec))
        out: dict[TargetKey, tuple[str, ServingAutoscalerSpec]] = {}
        conflicts: dict[str, list[str]] = {}
        for key, entries in by_key.items():
            if len(entries) == 1:
                out[key] = entries[0]
                continue
            names = sorted({src for src, _ in entries})
            incumbent = self._owner.get(key)
            held = [e for e in entries if e[0] == incumbent]
            keep = held[0] if len(held) == 1 else None  # not if the incumbent itself defines it twice
            outcome = (
                f"keeping the spec from {incumbent} until only one remains"
                if keep is not None
                else "neither is applied until only one remains"
            )
            for src in names:
                others = [n for n in names if n != src] or ["itself (twice)"]
                conflicts.setdefault(src, []).append(
                    f"{src}: target {key} is also defined by {', '.join(others)}; {outcome}"
                )
            if keep is not None:
                out[key] = keep
        self._report_conflicts(conflicts)
        self._owner = {key: src for key, (src, _) in out.items()}
        return [spec for _, spec in sorted(out.values(), key=lambda v: (v[1].target.namespace, v[1].target.deployment))]

    def _report_conflicts(self, conflicts: dict[str, list[str]]) -> None:
        for source, problems in conflicts.items():
            if self.conflicts.get(source) == problems:
                continue
            log.error("duplicate target", extra={"source": source, "problems": problems})
            if self._on_error is not None:
                self._on_error(source, problems, self._sources[source].specs)
        for source in set(self.conflicts) - set(conflicts):
            if source not in self.errors and self._on_clear is not None:
                self._on_clear(source)
        self.conflicts = conflicts

    async def run(self, stop: asyncio.Event) -> None:
        """Root task: poll every interval_s until `stop`."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.poll)
            except Exception:
                log.exception("spec poll failed")
            await sleep_or_stop(self._clock, self.interval_s, stop)


class SpecErrorReporter:
    """Turns spec-watcher errors into a log line (done by the watcher), the gauge and Events."""

    def __init__(self, telemetry: Telemetry, clock: Clock, events: EventRecorder | None) -> None:
        self._telemetry = telemetry
        self._clock = clock
        self._events = events

    def error(self, source: str, problems: list[str], kept: list[ServingAutoscalerSpec]) -> None:
        self._telemetry.spec_errors.labels(source).set(1)
        if self._events is None:
            return
        msg = f"invalid spec in {source}; keeping the last good spec: " + "; ".join(problems)
        objects = [InvolvedObject(s.target.namespace, s.target.deployment) for s in kept]
        if source.startswith("cr:"):  # the ServingAutoscaler object itself, for `kubectl describe`
            namespace, _, name = source.removeprefix("cr:").partition("/")
            objects.append(InvolvedObject(namespace, name, kind=KIND, api_version=API_VERSION))
        for obj in objects:
            self._events.emit(obj, SPEC_INVALID, msg, now_s=self._clock.now_s(), warning=True)

    def clear(self, source: str) -> None:
        self._telemetry.spec_errors.labels(source).set(0)
