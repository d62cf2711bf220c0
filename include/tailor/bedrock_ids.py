"""Bedrock model identifiers: the one rule a model id given in a Param (or anywhere else) must follow.

The ``weekly_evaluation`` trigger form checks :data:`MODEL_ID_PATTERN` (a JSON-schema ``pattern``) and the
tasks check :func:`model_id_problems` again before any model call, so a run cannot name something that is
not a model. Cheap to import: DAG files read it at parse time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: Longest model id or ARN accepted (real ids and ARNs are under 150 characters).
MODEL_ID_MAX_LENGTH = 256
#: A model id (``amazon.nova-pro-v1:0``, ``us.meta.llama3-1-8b-instruct-v1:0``) or the ARN of a foundation model,
#: an inference profile or a provisioned / imported model. Valid in JSON schema (ECMA-262) and Python alike.
MODEL_ID_PATTERN = r"^(arn:aws[a-z-]*:bedrock:[a-z0-9-]+:[0-9]{0,12}:[a-z-]+/)?[a-z0-9][a-z0-9.:_-]*$"
_MODEL_ID = re.compile(MODEL_ID_PATTERN)


def model_id_problems(model_ids: Sequence[object], name: str = "judge_models") -> list[str]:
    """What is wrong with each entry of ``model_ids`` (empty list: all are Bedrock model ids or ARNs)."""
    if isinstance(model_ids, str) or not isinstance(model_ids, Sequence) or not model_ids:
        return [f"{name}: expected a non-empty list of Bedrock model ids, got {model_ids!r}"]
    problems, seen = [], set()
    for index, model_id in enumerate(model_ids):
        where = f"{name}[{index}]"
        if not isinstance(model_id, str):
            problems.append(f"{where}: expected a Bedrock model id (a string), got {type(model_id).__name__}")
        elif len(model_id) > MODEL_ID_MAX_LENGTH:
            problems.append(f"{where}: {len(model_id)} characters, over the limit of {MODEL_ID_MAX_LENGTH} for a "
                            "model id or ARN")
        elif not _MODEL_ID.fullmatch(model_id):  # fullmatch: "$" alone would let a trailing newline through
            problems.append(f"{where}: {model_id!r} is not a Bedrock model id or ARN (like "
                            "'amazon.nova-pro-v1:0' or 'arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
                            "us.meta.llama3-1-8b-instruct-v1:0'); copy the id from the Bedrock console")
        elif model_id in seen:
            problems.append(f"{where}: {model_id!r} is listed twice; each judge once")
        else:
            seen.add(model_id)
    return problems
