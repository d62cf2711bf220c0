"""tailor.endpoints: the champion/challenger decision, deploy/promotion steps from DescribeEndpoint answers, and the
loops that apply them (with a scripted SageMaker client: no AWS, no Airflow)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tailor.endpoints import (
    Decision,
    EndpointError,
    PromotionResult,
    Waiting,
    decide,
    delete_endpoint,
    deploy_step,
    ensure_endpoint,
    lineage_status,
    matches,
    outcome_record,
    peak_endpoint_instances,
    promote_endpoint,
    promotion_step,
    resource_step,
)

NEW, OLD = "tailor-ft-new", "tailor-ft-old"
NOT_FOUND = ClientError({"Error": {"Code": "ValidationException",
                                   "Message": 'Could not find endpoint "arn:aws:sagemaker:us-east-1:1:endpoint/c".'}},
                        "DescribeEndpoint")
DENIED = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "DescribeEndpoint")


def endpoint(status: str, config: str = NEW, reason: str | None = None) -> dict[str, Any]:
    return {"EndpointName": "champion", "EndpointStatus": status, "EndpointConfigName": config,
            **({"FailureReason": reason} if reason else {})}


# --- the decision ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "challenger", "champion", "promote"), [
    ("if_better", 0.80, 0.81, True),   # worse by less than the margin
    ("if_better", 0.80, 0.83, False),  # worse by more than the margin
    ("if_better", 0.90, 0.80, True),
    ("if_better", 0.50, None, True),   # no (serving) champion to compare with
    ("if_better", None, 0.80, False),
    ("always", 0.10, 0.90, True),
    ("never", 0.99, 0.10, False),
])
def test_decide(policy: str, challenger: float | None, champion: float | None, promote: bool) -> None:
    decision = decide(policy, challenger, champion, 0.02)
    assert decision.promote is promote and decision.policy == policy and decision.reason


def test_decide_refuses_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="unknown promotion policy"):
        decide("sometimes", 0.9, 0.8, 0.02)


def test_outcome_record_says_promoted_only_for_a_promotion_aws_confirmed() -> None:
    decision = Decision("if_better", True, 0.9, 0.8, 0.02, "better")
    rolled_back = outcome_record(decision, PromotionResult("rolled_back", ("update",), endpoint("InService", OLD, "x"),
                                                           "health check failed"))
    assert rolled_back["promote"] is True and rolled_back["promoted"] is False
    assert rolled_back["outcome"] == lineage_status(rolled_back) == "rolled_back"
    assert rolled_back["endpoint_config_name"] == OLD and rolled_back["failure_reason"] == "health check failed"
    promoted = outcome_record(decision, PromotionResult("promoted", ("update",), endpoint("InService")))
    assert promoted["promoted"] is True and lineage_status(promoted) == "promoted"
    kept = outcome_record(Decision("never", False, 0.9, 0.8, 0.02, "policy never"), None)
    assert kept["promoted"] is False and lineage_status(kept) == "kept_champion" and kept["actions"] == []
    assert lineage_status(None) == "failed"


def test_peak_instances_with_the_challenger_deleted_before_the_blue_green_update() -> None:
    assert peak_endpoint_instances(1, champion_exists=True) == 2  # old + new champion fleet (or champion + challenger)
    assert peak_endpoint_instances(1, champion_exists=False) == 1
    assert peak_endpoint_instances(2, champion_exists=True) == 4


# --- resources a retry finds -------------------------------------------------------------------------------------


def test_matches_compares_the_requested_fields_only() -> None:
    wanted = {"ModelName": "m", "PrimaryContainer": {"Image": "i", "Environment": {"A": "1"}}, "Tags": [{"Key": "k"}]}
    described = {"ModelName": "m", "ModelArn": "arn", "PrimaryContainer": {"Image": "i", "Mode": "SingleModel",
                                                                          "Environment": {"A": "1"}}}
    assert matches(wanted, described)  # AWS's defaults (Mode) and the undescribed Tags do not matter
    assert not matches({**wanted, "PrimaryContainer": {"Image": "j"}}, described)
    assert not matches({"V": [{"A": 1}, {"A": 2}]}, {"V": [{"A": 1}]})
    assert matches({"InitialInstanceCount": 1}, {"InitialInstanceCount": 1.0})
    assert resource_step(None, wanted) == "create"
    assert resource_step(described, wanted) == "reuse"
    assert resource_step(described, {**wanted, "ExecutionRoleArn": "other"}) == "replace"


@pytest.mark.parametrize(("found", "stale", "created", "step"), [
    (None, False, False, "create"),
    (endpoint("Creating"), False, False, "wait"),  # an earlier try's endpoint, still coming up
    (endpoint("Deleting"), False, False, "wait"),
    (endpoint("InService"), False, False, "done"),  # an earlier try's endpoint: reused
    (endpoint("InService"), True, False, "delete"),  # built from a config this try had to re-create
    (endpoint("InService", OLD), False, False, "delete"),
    (endpoint("Failed", reason="capacity"), False, False, "delete"),  # an earlier try's failure: clean up
    (endpoint("Failed", reason="capacity"), False, True, "fail"),  # this try's failure: the task fails
    (endpoint("InService"), True, True, "done"),
    (endpoint("OutOfService"), False, False, "delete"),
])
def test_deploy_step(found: dict | None, stale: bool, created: bool, step: str) -> None:
    assert deploy_step(found, NEW, stale=stale, created=created) == step


@pytest.mark.parametrize(("found", "acted", "step"), [
    (None, False, "create"),
    (endpoint("InService", OLD), False, "update"),
    (endpoint("InService", OLD, "an older month's failed update"), False, "update"),
    (endpoint("Updating", OLD), False, "wait"),  # an earlier try's update in flight
    (endpoint("Updating", OLD), True, "wait"),
    (endpoint("InService", NEW), True, "promoted"),
    (endpoint("InService", NEW), False, "promoted"),  # an earlier try promoted it: reused, not updated again
    (endpoint("InService", OLD, "health check failed"), True, "rolled_back"),
    (endpoint("InService", NEW, "health check failed"), True, "rolled_back"),  # not clean: not a promotion
    (endpoint("InService", OLD), True, "rolled_back"),  # InService is no proof: the config did not change
    (endpoint("Failed", OLD, "capacity"), False, "replace"),  # only DeleteEndpoint works on a Failed endpoint
    (endpoint("OutOfService", OLD), False, "replace"),
    (endpoint("Failed", NEW, "capacity"), True, "failed"),
    (None, True, "failed"),
])
def test_promotion_step(found: dict | None, acted: bool, step: str) -> None:
    assert promotion_step(found, NEW, acted=acted) == step


# --- the loops, against a scripted client ---------------------------------------------------------------------------


class ScriptedSageMaker:
    """DescribeEndpoint answers from a script (a dict, None for "not found", or an exception); records requests."""

    def __init__(self, answers: Iterable[dict | None | Exception]) -> None:
        self.answers = list(answers)
        self.requests: list[str] = []

    def describe_endpoint(self, EndpointName: str) -> dict:  # noqa: N803 - boto3's keyword
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer is None:
            raise NOT_FOUND
        if isinstance(answer, Exception):
            raise answer
        return answer

    def __getattr__(self, operation: str) -> Any:
        def call(**kwargs: Any) -> dict:
            self.requests.append(f"{operation} {kwargs.get('EndpointConfigName', '')}".strip())
            return {}

        return call


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _waiting(timeout: float = 100.0) -> Waiting:
    clock = Clock()
    return Waiting(poll=1.0, timeout=timeout, sleep=clock.sleep, clock=lambda: clock.now, log=lambda _: None)


def test_promote_update_that_rolls_back_is_reported_as_rolled_back() -> None:
    sm = ScriptedSageMaker([endpoint("InService", OLD), endpoint("Updating", OLD), endpoint("Updating", OLD),
                            endpoint("InService", OLD, "health check failed")])
    result = promote_endpoint(sm, "champion", NEW, _waiting())
    assert (result.outcome, result.actions, result.failure_reason) == ("rolled_back", ("update",),
                                                                       "health check failed")
    assert sm.requests == [f"update_endpoint {NEW}"]


def test_promote_creates_a_missing_champion_and_replaces_a_failed_one() -> None:
    created = ScriptedSageMaker([None, endpoint("Creating"), endpoint("InService")])
    assert promote_endpoint(created, "champion", NEW, _waiting()).actions == ("create",)
    assert created.requests == [f"create_endpoint {NEW}"]
    replaced = ScriptedSageMaker([endpoint("Failed", OLD, "x"), endpoint("Failed", OLD, "x"), None, None,
                                  endpoint("Creating"), endpoint("InService")])
    result = promote_endpoint(replaced, "champion", NEW, _waiting())
    assert (result.outcome, result.actions) == ("promoted", ("replace", "create"))
    assert replaced.requests == ["delete_endpoint", f"create_endpoint {NEW}"]


def test_access_denied_on_describe_is_raised_never_taken_for_a_missing_champion() -> None:
    """The old code read every ClientError as "no champion" and created one (or promoted without comparing)."""
    sm = ScriptedSageMaker([DENIED])
    with pytest.raises(ClientError, match="AccessDenied"):
        promote_endpoint(sm, "champion", NEW, _waiting())
    with pytest.raises(ClientError, match="AccessDenied"):
        delete_endpoint(sm, "challenger", _waiting())
    assert sm.requests == []


def test_a_promotion_still_updating_at_the_deadline_raises() -> None:
    sm = ScriptedSageMaker([endpoint("InService", OLD), endpoint("Updating", OLD)])
    with pytest.raises(EndpointError, match="still Updating after 5 s"):
        promote_endpoint(sm, "champion", NEW, _waiting(timeout=5))


def test_delete_waits_out_creating_and_returns_only_when_gone() -> None:
    sm = ScriptedSageMaker([endpoint("Creating"), endpoint("InService"), endpoint("Deleting"), None])
    deleted = delete_endpoint(sm, "challenger", _waiting())
    assert deleted is not None and deleted["EndpointStatus"] == "InService"
    assert sm.requests == ["delete_endpoint"], "DeleteEndpoint only once the endpoint was settled"


def test_delete_that_never_completes_fails_loudly() -> None:
    sm = ScriptedSageMaker([endpoint("InService"), endpoint("Deleting")])
    with pytest.raises(EndpointError, match="still Deleting"):
        delete_endpoint(sm, "challenger", _waiting(timeout=3))


def test_ensure_endpoint_fails_with_the_failure_reason_of_its_own_endpoint() -> None:
    sm = ScriptedSageMaker([None, endpoint("Creating"), endpoint("Failed", reason="Unable to provision capacity")])
    with pytest.raises(EndpointError, match="is Failed: Unable to provision capacity") as failed:
        ensure_endpoint(sm, "challenger", NEW, _waiting())
    assert failed.value.endpoint is not None and failed.value.endpoint["EndpointStatus"] == "Failed"
    assert sm.requests == [f"create_endpoint {NEW}"]


def test_the_paired_non_inferiority_test_decides_if_better_when_it_can() -> None:
    from tailor.metrics.paired import non_inferiority

    champion = [0.80, 0.70, 0.90, 0.60, 0.85, 0.75, 0.65, 0.95]
    slightly_worse_everywhere = [c - 0.015 for c in champion]  # the means alone would promote (0.015 < 0.02)...
    noisy = [c + d for c, d in zip(champion, [0.3, -0.3, 0.25, -0.28, 0.3, -0.3, 0.2, -0.3], strict=True)]
    consistent = decide("if_better", sum(slightly_worse_everywhere) / 8, sum(champion) / 8, 0.02,
                        non_inferiority(slightly_worse_everywhere, champion, 0.02))
    assert consistent.promote and "not worse than the champion by more than 0.02 on n = 8" in consistent.reason
    # ...and a challenger whose mean is close but that is much worse on half the questions is not shown non-inferior
    erratic = decide("if_better", sum(noisy) / 8, sum(champion) / 8, 0.02, non_inferiority(noisy, champion, 0.02))
    assert not erratic.promote and "possibly worse" in erratic.reason
    untested = decide("if_better", 0.80, 0.81, 0.02, non_inferiority([0.80], [0.81], 0.02))
    assert untested.promote and "margin" in untested.reason  # one question: the mean rule
    assert decide("never", 0.9, 0.1, 0.02, non_inferiority(champion, champion, 0.02)).promote is False
