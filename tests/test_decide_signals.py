"""decide() with the signals the request metrics lack: DCGM GPU utilization and TF Serving's model status.

Pure ticks on a hand-walked clock (like test_decide_scenarios): a light load that lets the policy
scale 6 → fewer replicas, replayed without GPU data, with a GPU busy as the model predicts, and
with a GPU busy near 100 % (the model underestimates service time: no scale-down). Model status:
Ready pods still LOADING are not ready capacity, a rollout is named, and pods that do not answer
never lower a count.
"""

from __future__ import annotations

from autoscaler.core.capacity import CapacityModel
from autoscaler.core.decide import State, decide
from autoscaler.core.serving_signals import GPU_MODEL_GAP, GPU_SATURATED, modelled_busy_fraction
from autoscaler.core.types import Binding, Decision, ModelStatus, Observation, Signal, SignalStatus
from autoscaler.spec.types import Provisioning, ServingAutoscalerSpec, TargetRef

SPEC = ServingAutoscalerSpec(
    name="resnet",
    target=TargetRef("ml", "resnet", "resnet"),
    min_replicas=1,
    max_replicas=20,
    provisioning=Provisioning(lead_time_s=90.0),
)
MODEL = CapacityModel(SPEC.profile, exact_tail=False)
CAPACITY_RPS = CapacityModel(SPEC.profile).capacity_at_slo_rps(SPEC.batching.initial, SPEC.slo)
START = 6
LIGHT_RPS = 1.2 * CAPACITY_RPS  # fits 2 replicas: the policy wants to scale 6 -> 2
TICK_S = 15.0


def walk(gpu: float | None, *, ticks: int = 60, status: ModelStatus | None = None) -> list[Decision]:
    """Ticks of `decide` at a constant light load; each desired count is applied (direct mode)."""
    state = State.initial(SPEC, 0.0, START)
    replicas, out = START, []
    for i in range(1, ticks + 1):
        t = i * TICK_S
        o = Observation(
            time_s=t,
            request_rate_rps=Signal.of(LIGHT_RPS),
            rejected_rps=Signal.of(0.0),
            gpu_util=Signal.of(gpu) if gpu is not None else Signal.missing(SignalStatus.MISSING, "no DCGM"),
            current_replicas=replicas,
            ready_replicas=replicas,
            pending_replicas=0,
            model_status=status,
        )
        d, state = decide(SPEC, state, o, None, now_s=t)
        out.append(d)
        replicas = d.desired_replicas
    return out


def test_without_gpu_data_the_policy_scales_down() -> None:
    log = walk(None)
    assert log[-1].desired_replicas == 2
    assert all(d.gpu_util is None and d.gpu_util_model is None for d in log)
    assert not any(n.startswith("gpu:") for d in log for n in d.notes)


def test_gpu_busy_as_modelled_changes_no_count() -> None:
    base = walk(None)
    # the model's own prediction at the per-replica rate of the start (6 replicas): agreement
    agree = modelled_busy_fraction(MODEL, LIGHT_RPS / START, SPEC.batching.initial)
    assert 0.05 < agree < GPU_SATURATED
    log = walk(agree)
    assert [d.desired_replicas for d in log] == [d.desired_replicas for d in base]
    assert [d.binding for d in log] == [d.binding for d in base]
    assert log[0].gpu_util == agree and log[0].gpu_util_model is not None
    assert abs(log[0].gpu_util_model - agree) < 0.02
    assert any(n.startswith("gpu: busy") for n in log[0].notes)


def test_gpu_saturated_against_the_model_blocks_scale_down_and_says_why() -> None:
    log = walk(0.97)
    assert all(d.desired_replicas == START for d in log)  # never below the last desired count
    held = [d for d in log if d.binding is Binding.GPU_SATURATION]
    assert held, [d.reason for d in log]
    r = held[-1].reason
    assert "GPU busy 97%" in r and "no scale-down" in r and f"kept at {START}" in r
    assert held[-1].gpu_util == 0.97 and (held[-1].gpu_util_model or 1.0) < 0.97 - GPU_MODEL_GAP
    assert any("calibration suspect" in n for n in held[-1].notes)


def test_gpu_check_never_raises_the_count() -> None:
    """Saturation forbids a scale-down; it does not invent a scale-up (the load signals own that)."""
    assert max(d.desired_replicas for d in walk(1.0)) == START


def test_model_status_loading_pods_are_not_ready_capacity() -> None:
    loading = ModelStatus(pods=START, available=4, versions=((1, "AVAILABLE", 4), (1, "LOADING", 2)))
    d = walk(None, ticks=1, status=loading)[0]
    assert d.model_ready_replicas == 4
    assert "v1 LOADING on 2 pods" in d.model_versions
    assert any("2 Ready pods not serving yet" in n for n in d.notes)
    assert any("pods starting or stopping" in n for n in d.notes)  # no calibration while they load


def test_version_rollout_is_named_in_the_decision() -> None:
    rolling = ModelStatus(pods=START, available=START, versions=((1, "AVAILABLE", START), (2, "LOADING", START)))
    d = walk(None, ticks=1, status=rolling)[0]
    assert rolling.rollout and rolling.live_versions == (1, 2)
    assert any("version rollout in progress (versions 1, 2)" in n for n in d.notes)
    assert d.model_versions == "v1 AVAILABLE on 6 pods, v2 LOADING on 6 pods"


def test_missing_model_status_never_lowers_a_count() -> None:
    """Pods that did not answer keep their Kubernetes readiness: the same decisions as without status."""
    silent = ModelStatus(pods=START, available=0, unknown=START)
    base, log = walk(None), walk(None, status=silent)
    assert [d.desired_replicas for d in log] == [d.desired_replicas for d in base]
    assert log[0].model_ready_replicas == START


def test_absent_signals_leave_the_decision_unchanged() -> None:
    """The simulator has neither signal: the new Decision fields stay at their defaults."""
    d = walk(None, ticks=1)[0]
    assert (d.gpu_util, d.gpu_util_model, d.model_ready_replicas, d.model_versions) == (None, None, None, "")
