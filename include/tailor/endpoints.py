"""SageMaker hosting for the fine-tune: a deploy a retry can resume, a promotion that tells the truth, a teardown
that verifies.

The decisions are pure functions of what SageMaker's Describe* calls answer (``deploy_step``, ``promotion_step``,
``decide``...); the loops that apply them (``ensure_*``, ``promote_endpoint``, ``delete_endpoint``) take a boto3
SageMaker client, a poll interval and a deadline, and return or raise -- they never guess.

AWS behaviour relied on (each is emulated by the local AWS, ``include/localaws/sagemaker.py``):

* ``EndpointStatus``: Creating, Updating, SystemUpdating, RollingBack and Deleting are transitional; "Failed:
  Endpoint could not be created, updated, or re-scaled [...] DeleteEndpoint is the only operation that can be
  performed on a failed endpoint" (DescribeEndpoint API reference, EndpointStatus).
* UpdateEndpoint is asynchronous and blue/green: "Deploys the EndpointConfig specified in the request to a new fleet
  of instances. SageMaker shifts endpoint traffic to the new instances [...] and then deletes the old instances";
  status Updating, then InService (UpdateEndpoint API reference). Old and new fleets run side by side meanwhile.
* A failed update does not fail the endpoint: it stays (returns to) InService on its previous EndpointConfigName
  with a ``FailureReason`` ("If the status of the endpoint is Failed, or the status is InService but update
  operation fails, this provides the reason why it failed": DescribeEndpoint API reference, FailureReason; AWS's
  own controller test aws-controllers-k8s/sagemaker-controller ``test/e2e/tests/test_endpoint.py``
  ``update_endpoint_failed_test``; hashicorp/terraform-provider-aws#39099 "Sagemaker endpoint updates can fail
  silently"). A later successful update clears the FailureReason (same controller test). So "InService" after
  an UpdateEndpoint proves nothing: the config name and FailureReason must be checked.
* UpdateEndpoint and DeleteEndpoint are refused while the endpoint is Creating/Updating (``ValidationException:
  Cannot update in-progress endpoint "arn:..."``): wait for a settled status first.
* Names are unique per account and region: creating an existing model, endpoint configuration or endpoint is
  refused (``Cannot create already existing ...``), so a retry must look before it creates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tailor.aws_errors import describe_or_none

Description = Mapping[str, Any]
#: Statuses that settle by themselves (DescribeEndpoint API reference, EndpointStatus).
TRANSITIONAL = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
#: Statuses in which the endpoint's current fleet answers InvokeEndpoint (Updating: the old fleet serves until
#: traffic is shifted; UpdateEndpoint API reference: "there is no availability loss").
SERVING = frozenset({"InService", "Updating", "SystemUpdating"})
#: Fields of a create request that Describe* does not echo back (not part of "the same resource").
_NOT_DESCRIBED = frozenset({"Tags"})

ResourceStep = Literal["create", "reuse", "replace"]
DeployStep = Literal["create", "wait", "delete", "done", "fail"]
PromotionStep = Literal["create", "update", "replace", "wait", "promoted", "rolled_back", "failed"]
Outcome = Literal["promoted", "kept_champion", "rolled_back", "failed"]


class EndpointError(RuntimeError):
    """An endpoint did not reach the state a task needs; the message says which, and what AWS reported."""

    def __init__(self, message: str, endpoint: Description | None = None) -> None:
        super().__init__(message)
        self.endpoint = dict(endpoint) if endpoint is not None else None


# --- pure decisions ----------------------------------------------------------------------------------------------


def matches(wanted: Any, actual: Any) -> bool:
    """Whether ``actual`` (a Describe* answer) has every value ``wanted`` (a Create* request) asks for.

    Dicts compare key by key on the request's keys only (AWS adds defaults such as ``InitialVariantWeight`` or
    ``Mode``), lists element by element, scalars by equality (numbers as numbers: 1 == 1.0)."""
    if isinstance(wanted, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and matches(value, actual[key]) for key, value in wanted.items()
            if key not in _NOT_DESCRIBED)
    if isinstance(wanted, (list, tuple)):
        return isinstance(actual, (list, tuple)) and len(wanted) == len(actual) and all(
            matches(w, a) for w, a in zip(wanted, actual, strict=True))
    return bool(wanted == actual)


def resource_step(existing: Description | None, wanted: Mapping[str, Any]) -> ResourceStep:
    """A model or endpoint configuration a retry finds under its own name: reuse it if it is the one this run
    asks for, else replace it (delete + create); create it when there is none."""
    if existing is None:
        return "create"
    return "reuse" if matches(wanted, existing) else "replace"


def deploy_step(endpoint: Description | None, config_name: str, *, stale: bool = False,
                created: bool = False) -> DeployStep:
    """The next step towards an endpoint InService on ``config_name`` (the challenger).

    ``stale``: the endpoint configuration was re-created in this try, so an endpoint found from an earlier try
    runs an outdated version of it. ``created``: this try created the endpoint, so a Failed one is this try's
    failure (``fail``), not a leftover to clean up (``delete``)."""
    if endpoint is None:
        return "create"
    status = endpoint["EndpointStatus"]
    if status in TRANSITIONAL:
        return "wait"
    ready = status == "InService" and endpoint.get("EndpointConfigName") == config_name
    if created:
        return "done" if ready else "fail"
    return "done" if ready and not stale else "delete"


def promotion_step(champion: Description | None, config_name: str, *, acted: bool = False) -> PromotionStep:
    """The next step of pointing the champion endpoint at ``config_name``, or the outcome.

    ``acted``: this try already sent UpdateEndpoint/CreateEndpoint. Then only InService on the new config with
    no FailureReason is a promotion; InService on another config is a rollback (AWS's behaviour on a failed
    update); Failed means the champion is down. Without an action of ours, a champion already on the new
    config was promoted by an earlier try (a retry reuses it); a Failed or OutOfService champion is replaced
    (delete + create: DeleteEndpoint is the only operation AWS accepts on a Failed endpoint), any other
    settled one updated."""
    if champion is None:
        return "failed" if acted else "create"
    status = champion["EndpointStatus"]
    if status in TRANSITIONAL:
        return "wait"
    on_new = champion.get("EndpointConfigName") == config_name
    if status == "InService":
        if acted:
            return "promoted" if on_new and not champion.get("FailureReason") else "rolled_back"
        return "promoted" if on_new else "update"
    return "failed" if acted else "replace"


@dataclass(frozen=True)
class Decision:
    """Champion/challenger comparison: whether to promote, and why."""

    policy: str
    promote: bool
    challenger: float | None
    champion: float | None
    margin: float
    reason: str


def decide(policy: str, challenger: float | None, champion: float | None, margin: float,
           paired: Any = None) -> Decision:
    """``always`` / ``never`` / ``if_better``: promote unless the challenger is worse than the champion by more
    than ``margin``; with no champion to compare (none, or one that cannot serve) a working challenger wins.

    ``paired`` (:class:`tailor.metrics.paired.NonInferiority` of the per-question scores) decides ``if_better``
    when it could test: the challenger must be non-inferior with 95 % confidence, not merely on average."""
    if policy not in ("if_better", "always", "never"):
        raise ValueError(f"unknown promotion policy {policy!r}: use if_better, always or never")
    if policy != "if_better":
        return Decision(policy, policy == "always", challenger, champion, margin, f"policy {policy}")
    if challenger is None:
        return Decision(policy, False, challenger, champion, margin, "the challenger has no score")
    if champion is None:
        return Decision(policy, True, challenger, champion, margin, "no champion to compare with")
    if paired is not None and paired.tested:
        return Decision(policy, paired.non_inferior, challenger, champion, margin, paired.describe())
    promote = challenger >= champion - margin
    relation = "not worse than" if promote else "worse than"
    return Decision(policy, promote, challenger, champion, margin,
                    f"challenger {challenger:.4f} {relation} champion {champion:.4f} - margin {margin}")


@dataclass(frozen=True)
class PromotionResult:
    """What UpdateEndpoint/CreateEndpoint really achieved on the champion endpoint."""

    outcome: Literal["promoted", "rolled_back", "failed"]
    actions: tuple[str, ...]  # what this try sent: "update", "create", "replace" (delete + create); () = reused
    endpoint: Description | None  # the last DescribeEndpoint answer
    failure_reason: str | None = None

    @property
    def config_name(self) -> str | None:
        return None if self.endpoint is None else self.endpoint.get("EndpointConfigName")


def outcome_record(decision: Decision, result: PromotionResult | None) -> dict[str, Any]:
    """The decision as recorded in XCom, ``lineage.json`` and the task log: ``promoted`` is true only when the
    champion endpoint was seen InService on the challenger's configuration."""
    outcome: Outcome = "kept_champion" if result is None else result.outcome
    return {"policy": decision.policy, "promote": decision.promote, "promoted": outcome == "promoted",
            "outcome": outcome, "reason": decision.reason, "challenger": decision.challenger,
            "champion": decision.champion, "margin": decision.margin,
            "actions": list(result.actions) if result else [],
            "endpoint_config_name": result.config_name if result else None,
            "failure_reason": result.failure_reason if result else None}


def lineage_status(record: Mapping[str, Any] | None) -> str:
    """``lineage.json``'s status: the promotion's outcome, or ``failed`` when the run never got to decide."""
    return str(record["outcome"]) if record else "failed"


def peak_endpoint_instances(instances_per_endpoint: int, champion_exists: bool) -> int:
    """Endpoint instances of the configured type a run holds at its peak, with the challenger deleted before
    the champion is updated (what ``promote`` does): the evaluation runs champion + challenger; a blue/green
    update runs the old and the new champion fleet. Without deleting the challenger first it would be 3x."""
    return instances_per_endpoint * (2 if champion_exists else 1)


# --- loops over a SageMaker client -------------------------------------------------------------------------------


@dataclass
class Waiting:
    """Poll interval and deadline of one loop (``sleep``/``clock`` injectable for tests)."""

    poll: float
    timeout: float
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    log: Callable[[str], None] = print
    _deadline: float = field(default=0.0, init=False)

    def start(self) -> Waiting:
        self._deadline = self.clock() + self.timeout
        return self

    def pause(self, what: str, endpoint: Description | None) -> None:
        if self.clock() >= self._deadline:
            status = endpoint["EndpointStatus"] if endpoint else "absent"
            raise EndpointError(f"{what}: still {status} after {self.timeout:.0f} s", endpoint)
        self.sleep(self.poll)


def describe_endpoint(sagemaker: Any, name: str) -> Description | None:
    return describe_or_none(lambda: sagemaker.describe_endpoint(EndpointName=name), "endpoint")


def ensure_model(sagemaker: Any, config: Mapping[str, Any]) -> ResourceStep:
    """CreateModel unless an earlier try made this very model; a different model under the name is replaced."""
    name = config["ModelName"]
    step = resource_step(describe_or_none(lambda: sagemaker.describe_model(ModelName=name), "model"), config)
    if step == "replace":
        sagemaker.delete_model(ModelName=name)
    if step != "reuse":
        sagemaker.create_model(**config)
    return step


def ensure_endpoint_config(sagemaker: Any, config: Mapping[str, Any]) -> ResourceStep:
    """CreateEndpointConfig unless an earlier try made this very configuration; a different one is replaced."""
    name = config["EndpointConfigName"]
    existing = describe_or_none(lambda: sagemaker.describe_endpoint_config(EndpointConfigName=name),
                                "endpoint configuration")
    step = resource_step(existing, config)
    if step == "replace":
        sagemaker.delete_endpoint_config(EndpointConfigName=name)
    if step != "reuse":
        sagemaker.create_endpoint_config(**config)
    return step


def ensure_endpoint(sagemaker: Any, name: str, config_name: str, waiting: Waiting, *,
                    stale: bool = False) -> Description:
    """An endpoint ``name`` InService on ``config_name``: reuses one an earlier try created (waiting for it if it
    is still Creating), deletes a Failed or outdated one and creates it again; raises :class:`EndpointError`
    with SageMaker's FailureReason when the endpoint this try created fails."""
    waiting.start()
    created = False
    while True:
        endpoint = describe_endpoint(sagemaker, name)
        step = deploy_step(endpoint, config_name, stale=stale, created=created)
        if step == "done":
            assert endpoint is not None
            return endpoint
        if step == "fail":
            assert endpoint is not None
            raise EndpointError(f"endpoint {name} is {endpoint['EndpointStatus']}: "
                                f"{endpoint.get('FailureReason') or '(no FailureReason given)'}", endpoint)
        if step == "create":
            waiting.log(f"creating endpoint {name} on {config_name}")
            sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config_name)
            created = True
        elif step == "delete":
            assert endpoint is not None
            waiting.log(f"endpoint {name} from an earlier try is {endpoint['EndpointStatus']} on "
                        f"{endpoint.get('EndpointConfigName')}: deleting it to create it again")
            sagemaker.delete_endpoint(EndpointName=name)
        waiting.pause(f"endpoint {name}", endpoint)


def delete_endpoint(sagemaker: Any, name: str, waiting: Waiting) -> Description | None:
    """Delete endpoint ``name`` and return only once SageMaker says it does not exist (what was deleted, or None
    when there was nothing). Waits out Creating/Updating first (AWS refuses DeleteEndpoint then). Raises
    :class:`EndpointError` if it still exists at the deadline: never returns with the endpoint running."""
    waiting.start()
    deleted: Description | None = None
    while True:
        endpoint = describe_endpoint(sagemaker, name)
        if endpoint is None:
            return deleted
        if endpoint["EndpointStatus"] not in TRANSITIONAL:
            waiting.log(f"deleting endpoint {name} ({endpoint['EndpointStatus']})")
            sagemaker.delete_endpoint(EndpointName=name)
            deleted = deleted or endpoint
        waiting.pause(f"deleting endpoint {name}", endpoint)


def promote_endpoint(sagemaker: Any, name: str, config_name: str, waiting: Waiting) -> PromotionResult:
    """Point endpoint ``name`` at ``config_name`` and report what really happened (see :func:`promotion_step`):
    creates it if absent, replaces it if Failed, updates it otherwise, waits while it is Updating, and reuses
    a promotion an earlier try made. Raises :class:`EndpointError` only on a timeout."""
    waiting.start()
    actions: list[str] = []
    while True:
        champion = describe_endpoint(sagemaker, name)
        step = promotion_step(champion, config_name, acted=bool({"update", "create"} & set(actions)))
        if step in ("promoted", "rolled_back", "failed"):
            reason = champion.get("FailureReason") if champion else "the endpoint disappeared"
            return PromotionResult(step, tuple(actions), champion, None if step == "promoted" else reason)
        if step == "update":
            waiting.log(f"updating endpoint {name}: {champion and champion.get('EndpointConfigName')} -> "
                        f"{config_name} (blue/green)")
            sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=config_name)
        elif step == "create":
            waiting.log(f"creating endpoint {name} on {config_name}")
            sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config_name)
        elif step == "replace":
            assert champion is not None
            waiting.log(f"endpoint {name} is {champion['EndpointStatus']} "
                        f"({champion.get('FailureReason')}): deleting it to create it on {config_name}")
            delete_endpoint(sagemaker, name, Waiting(waiting.poll, waiting.timeout, waiting.sleep, waiting.clock,
                                                     waiting.log))
        if step != "wait":
            actions.append(step)
        if step != "replace":  # after a request, look again one poll later (not in the same instant)
            waiting.pause(f"endpoint {name}", champion)
