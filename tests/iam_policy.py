"""A small IAM policy evaluator (Allow statements, Action/Resource wildcards, String/Arn conditions) and the shipped
policies' paths: shared by tests/deploy/test_iam.py (static checks) and the e2e check of the calls the DAGs make."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from devstack.stack import REPO

IAM_DIR = REPO / "include" / "iam"
AIRFLOW_POLICY = IAM_DIR / "airflow-role-policy.json"


def render(text: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        assert match[1] in values, f"unknown placeholder ${{{match[1]}}}"
        return values[match[1]]

    return re.sub(r"\$\{([A-Za-z:]+)\}", replace, text)


def listify(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _conditions_hold(condition: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, expected in tests.items():
            if key not in context:
                return False
            if operator == "StringEquals":
                ok = context[key] in listify(expected)
            elif operator in ("StringLike", "ArnLike"):
                ok = any(_wildcard(p, context[key]) for p in listify(expected))
            else:
                raise AssertionError(f"condition operator {operator} not handled by this evaluator")
            if not ok:
                return False
    return True


def allowed(policy: dict[str, Any], action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow", "the evaluator handles Allow statements only"
        if not any(_wildcard(a, action, ignore_case=True) for a in listify(statement["Action"])):
            continue
        if not any(_wildcard(r, resource) for r in listify(statement["Resource"])):
            continue
        if _conditions_hold(statement.get("Condition", {}), context or {}):
            return True
    return False
