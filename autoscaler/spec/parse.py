"""Load ServingAutoscaler YAML, validate it, and build the frozen spec the core reads.

Owns the error messages users see for bad specs: every message names the source, the field
path as written in YAML (`spec.slo.latencyMs`), the bad value and what was expected, so
`tfserving-autoscaler validate` and the daemon's hot reload can report them verbatim.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from autoscaler.spec import safeyaml
from autoscaler.spec.model import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    DocumentModel,
    ProfileModel,
    ScalingRulesModel,
    SpecModel,
)
from autoscaler.spec.types import (
    SLO,
    BatchingParams,
    BatchingSpec,
    Behavior,
    ForecasterSpec,
    IntRange,
    Mode,
    Outputs,
    PolicyType,
    Provisioning,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    ServedModel,
    ServiceProfile,
    ServingAutoscalerSpec,
    StartupSpec,
    TargetRef,
    default_scale_down,
    default_scale_up,
)


class SpecError(ValueError):
    """One or more problems with a spec document; `problems` holds one message each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


_PATTERNS = {
    DNS_LABEL: "a lowercase RFC 1123 label (a-z, 0-9, '-'; starts and ends alphanumeric)",
    DNS_SUBDOMAIN: "a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'; starts and ends alphanumeric)",
}

_EXPECT = {
    "greater_than": lambda c: f"> {c['gt']}",
    "greater_than_equal": lambda c: f">= {c['ge']}",
    "less_than": lambda c: f"< {c['lt']}",
    "less_than_equal": lambda c: f"<= {c['le']}",
    "literal_error": lambda c: f"one of {c['expected']}",
    "string_pattern_mismatch": lambda c: _PATTERNS.get(c["pattern"], f"a string matching {c['pattern']}"),
    "string_too_short": lambda c: f"at least {c['min_length']} characters",
    "string_too_long": lambda c: f"at most {c['max_length']} characters",
    "too_short": lambda c: f"at least {c['min_length']} items",
}


def _loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("int", "float", "str", "list[ProfilePointModel]") or part.startswith(
            ("literal[", "constrained-", "function-")
        ):
            continue  # union branch names, not user-visible fields
        else:
            out += f".{part}" if out else part
    return out


def _format(source: str, err: Mapping[str, Any]) -> str:
    path = _loc(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind == "missing":
        return f"{source}: {path}: required field is missing"
    if kind == "extra_forbidden":
        return f"{source}: {path}: unknown field (got {got!r}); check the spelling (fields are camelCase)"
    if kind == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        if msg.startswith("@"):  # a model validator naming one of its fields: "@field: problem"
            sub, _, msg = msg[1:].partition(": ")
            path = f"{path}.{sub}" if path else sub
        return f"{source}: {path or '<document>'}: {msg}"
    expect = _EXPECT[kind](ctx) if kind in _EXPECT else None
    problem = err["msg"]
    if kind == "string_pattern_mismatch":
        problem = "invalid name"
    if err.get("_or_literal"):
        problem = "invalid value"
        expect = f"{expect or 'a number'} or {err['_or_literal']}"
    detail = f"got {got!r}" + (f"; expected {expect}" if expect else "")
    return f"{source}: {path}: {problem} ({detail})"


def _dedupe_union_errors(errors: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """For `int | "auto"` fields pydantic reports one error per branch; keep the informative one."""
    by_path: dict[str, Mapping[str, Any]] = {}
    order: list[str] = []
    for e in errors:
        key = _loc(e["loc"])
        if key not in by_path:
            order.append(key)
            by_path[key] = e
        else:
            first, second = by_path[key], e
            literal = first if first["type"] == "literal_error" else second
            other = second if literal is first else first
            if literal["type"] == "literal_error":
                merged = dict(other)
                merged["_or_literal"] = (literal.get("ctx") or {}).get("expected", "")
                by_path[key] = merged
    return [by_path[k] for k in order]


def _rules(m: ScalingRulesModel | None, default: ScalingRules) -> ScalingRules:
    """HPA API defaulting (`pkg/apis/autoscaling/v2/defaults.go`): each nil field takes the direction's default."""
    if m is None:
        return default
    return ScalingRules(
        stabilization_window_s=(
            default.stabilization_window_s if m.stabilization_window_seconds is None else m.stabilization_window_seconds
        ),
        select_policy=SelectPolicy(m.select_policy),
        policies=(
            default.policies
            if m.policies is None
            else tuple(ScalingPolicy(PolicyType(p.type), p.value, p.period_seconds) for p in m.policies)
        ),
        tolerance=default.tolerance if m.tolerance is None else m.tolerance,
    )


def _profile(p: ProfileModel) -> ServiceProfile:
    return ServiceProfile(
        batch_sizes=tuple(pt.batch_size for pt in p.batch_latency),
        batch_latency_ms=tuple(pt.latency_ms for pt in p.batch_latency),
        cpu_ms_per_request=p.cpu_ms_per_request,
        cpu_request_millicores=p.cpu_request_millicores,
        device_parallelism=p.device_parallelism,
        source=p.source,
    )


def _to_spec(doc: DocumentModel) -> ServingAutoscalerSpec:
    s: SpecModel = doc.spec
    t = s.target
    p = s.provisioning
    f = s.forecaster
    b = s.batching
    profile = ServiceProfile() if s.profile is None else _profile(s.profile)
    models = tuple(
        ServedModel(m.name, m.share, None if m.profile is None else _profile(m.profile)) for m in t.models or ()
    )

    def rng(r: Any) -> IntRange:
        return IntRange(r.min, r.max)

    return ServingAutoscalerSpec(
        name=doc.metadata.name,
        target=TargetRef(
            namespace=t.namespace or doc.metadata.namespace,
            deployment=t.deployment,
            model_name=t.model_name if t.model_name is not None else models[0].name,
            rest_port=t.rest_port,
            grpc_port=t.grpc_port,
            container=t.container,
            batching_configmap=t.batching_config_map,
            models=models,
        ),
        min_replicas=s.min_replicas,
        max_replicas=s.max_replicas,
        slo=SLO(s.slo.latency_quantile, s.slo.latency_ms, s.slo.attainment),
        provisioning=Provisioning(
            forecast_quantile=p.forecast_quantile,
            headroom=p.headroom,
            lead_time_s=None if p.lead_time_seconds == "auto" else float(p.lead_time_seconds),
            decision_period_s=float(p.decision_period_seconds),
            metrics_lag_s=float(p.metrics_lag_seconds),
            burst_window_s=float(p.burst_window_seconds),
            panic_threshold=p.panic_threshold,
            stale_after_s=float(p.stale_after_seconds),
        ),
        forecaster=ForecasterSpec(
            model=f.model,
            season_length_s=f.season_length_seconds,
            step_s=f.step_seconds,
            history_s=f.history_seconds,
            refit_interval_s=f.refit_interval_seconds,
            level=f.level,
        ),
        batching=BatchingSpec(
            tune=b.tune,
            initial=BatchingParams(
                max_batch_size=b.initial.max_batch_size,
                batch_timeout_us=b.initial.batch_timeout_micros,
                num_batch_threads=b.initial.num_batch_threads,
                max_enqueued_batches=b.initial.max_enqueued_batches,
            ),
            max_batch_size=rng(b.bounds.max_batch_size),
            batch_timeout_us=rng(b.bounds.batch_timeout_micros),
            num_batch_threads=rng(b.bounds.num_batch_threads),
            max_enqueued_batches=rng(b.bounds.max_enqueued_batches),
            min_rollout_interval_s=float(b.min_rollout_interval_seconds),
            min_gain=b.min_gain,
        ),
        behavior=Behavior(
            scale_up=_rules(s.behavior.scale_up, default_scale_up()),
            scale_down=_rules(s.behavior.scale_down, default_scale_down()),
        ),
        mode=Mode(s.mode),
        profile=profile,
        startup=StartupSpec(
            scheduling_s=s.startup.scheduling_seconds,
            image_pull_s=s.startup.image_pull_seconds,
            model_load_s=s.startup.model_load_seconds,
            warmup_s=s.startup.warmup_seconds,
            jitter_cv=s.startup.jitter_cv,
        ),
        outputs=Outputs(decisions_path=s.outputs.decisions_path, metrics_prefix=s.outputs.metrics_prefix),
    )


# The forecast registry's names (spec/ sits below forecast/ in the layering, so the list is
# repeated here; tests/test_spec.py checks it equals autoscaler.forecast.registry.names()).
FORECASTERS = ("auto", "seasonal-naive", "holt-winters", "profile-holt", "holt", "naive")


def _semantic_checks(source: str, spec: ServingAutoscalerSpec) -> list[str]:
    """Checks that need the assembled spec (profile vs SLO, registry names)."""
    problems: list[str] = []
    single_ms = spec.profile.batch_latency_ms[0]
    if spec.slo.latency_ms <= single_ms:
        problems.append(
            f"{source}: spec.slo.latencyMs: {spec.slo.latency_ms:g} ms is not above the profile's "
            f"single-request service time ({single_ms:g} ms at batch size {spec.profile.batch_sizes[0]}); "
            f"no replica count can meet it (expected > {single_ms:g})"
        )
    for i, m in enumerate(spec.target.models):
        if m.profile is not None and spec.slo.latency_ms <= m.profile.batch_latency_ms[0]:
            one_ms = m.profile.batch_latency_ms[0]
            problems.append(
                f"{source}: spec.target.models[{i}].profile: model {m.name!r} takes {one_ms:g} ms for one request, "
                f"not below spec.slo.latencyMs {spec.slo.latency_ms:g} (expected a single-request service time "
                f"< {spec.slo.latency_ms:g} ms)"
            )
    known = FORECASTERS
    if spec.forecaster.model not in known:
        problems.append(
            f"{source}: spec.forecaster.model: unknown forecaster (got {spec.forecaster.model!r}; "
            f"expected one of {', '.join(known)})"
        )
    return problems


def _custom_resource_checks(source: str, model: DocumentModel) -> list[str]:
    """What a tenant's custom resource may not do, though the operator's own spec files may.

    A ServingAutoscaler object lives in a namespace whose users may create it; letting it name
    another namespace would let one tenant replace another's autoscaling (RBAC on the CR is per
    namespace, so the target must be too), and letting it choose `outputs.decisionsPath` would let
    it make the daemon append to any file the daemon can write.
    """
    problems: list[str] = []
    own = model.metadata.namespace
    target_ns = model.spec.target.namespace
    if target_ns is not None and target_ns != own:
        problems.append(
            f"{source}: spec.target.namespace: a ServingAutoscaler may only target its own namespace "
            f"(got {target_ns!r}; expected {own!r} or unset)"
        )
    if model.spec.outputs.decisions_path is not None:
        problems.append(
            f"{source}: spec.outputs.decisionsPath: only the daemon's own spec files may choose file paths "
            f"(got {model.spec.outputs.decisions_path[:200]!r}; expected unset in a ServingAutoscaler object)"
        )
    return problems


def parse_spec(doc: object, source: str = "<spec>", *, custom_resource: bool = False) -> ServingAutoscalerSpec:
    """Validate one parsed YAML document; raise SpecError with every problem found.

    `custom_resource`: the document is a ServingAutoscaler object from the API server (a tenant's),
    not the operator's spec file: it may only target its own namespace.
    """
    if not isinstance(doc, dict):
        raise SpecError([f"{source}: <document>: expected a mapping (got {type(doc).__name__})"])
    try:
        model = DocumentModel.model_validate(doc)
    except ValidationError as exc:
        errors = _dedupe_union_errors(list(exc.errors()))
        raise SpecError([_format(source, e) for e in errors]) from None
    spec = _to_spec(model)
    problems = _semantic_checks(source, spec)
    if custom_resource:
        problems += _custom_resource_checks(source, model)
    if problems:
        raise SpecError(problems)
    return spec


def parse_specs_text(text: str, source: str = "<spec>") -> list[ServingAutoscalerSpec]:
    """Every ServingAutoscaler in a (multi-document) YAML text, or SpecError listing all problems.

    Hostile input is bounded before parsing (size, depth, alias expansion, number length) and
    duplicate keys are refused, see `safeyaml.py`; each is a SpecError, never another exception.
    """
    try:
        docs = safeyaml.load_all(text)
    except safeyaml.YamlLimitError as exc:
        raise SpecError([f"{source}:{exc}" if str(exc).startswith(" line") else f"{source}: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SpecError([f"{source}:{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not docs:
        raise SpecError([f"{source}: no ServingAutoscaler document found (file is empty)"])
    specs: list[ServingAutoscalerSpec] = []
    problems: list[str] = []
    for i, doc in enumerate(docs):
        src = source if len(docs) == 1 else f"{source}[doc {i}]"
        try:
            specs.append(parse_spec(doc, src))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return specs


def load_specs(path: str | Path) -> list[ServingAutoscalerSpec]:
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(safeyaml.MAX_SPEC_BYTES + 1)  # never read more than the limit
    except OSError as exc:
        raise SpecError([f"{p}: cannot read file: {exc.strerror or exc}"]) from None
    try:
        text = safeyaml.decode(data)
    except safeyaml.YamlLimitError as exc:
        raise SpecError([f"{p}: {exc}"]) from None
    return parse_specs_text(text, str(p))


def load_spec(path: str | Path) -> ServingAutoscalerSpec:
    """The single ServingAutoscaler in `path` (SpecError if there are none or several)."""
    specs = load_specs(path)
    if len(specs) != 1:
        raise SpecError([f"{path}: expected exactly one ServingAutoscaler document, found {len(specs)}"])
    return specs[0]
