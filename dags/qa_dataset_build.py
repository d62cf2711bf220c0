"""
### QA dataset build: generate, curate and split QA pairs from the catalog (manual)

Reads the catalog version the Knowledge Base holds (`catalog/current.json`; the packaged sample before the first
sync; or the `catalog` Param), cuts each product section into `questions_per_section` passages and asks Bedrock
`Converse` (temperature 0, bounded concurrency, adaptive retries) for one strict `Q:` / `A:` pair per passage. Raw
replies are persisted first; then malformed pairs, questions that do not name their product, answers not
grounded in their section, collisions with the reference test set, exact and near duplicates are dropped, each
counted by reason. Whole product sections go to train or to test (deterministic hash), so no test answer's
source text is ever trained on. Both files are checked with the QA validator, then written with a manifest
(counts, drops by reason, catalog version, model, params) to `s3://<bucket>/qa/generated/<version>/`: the
version is a content hash of catalog + params + prompt, so a re-run overwrites its own files. The run fails if
the kept pairs cannot fill both sides. The hand-written sets in `include/data/qa` stay the config default;
point `qa.test_set` / `qa.train_set` (or the `dataset` Param of `weekly_evaluation`) at a generated file to use it.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag

from tailor.bedrock_ids import MODEL_ID_MAX_LENGTH, MODEL_ID_PATTERN
from tailor_airflow.defaults import DEFAULT_ARGS, START_DATE
from tailor_airflow.qa_build import curate_dataset, generate_candidates, plan_dataset


@dag(
    dag_id="qa_dataset_build",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={
        "catalog": Param(None, type=["null", "string"], maxLength=1024,
                         description="Catalog to generate from: s3://bucket/key, a key in the bucket or a path "
                                     "under include/. Empty: the version the Knowledge Base holds."),
        "questions_per_section": Param(2, type="integer", minimum=1, maximum=5,
                                       description="Passages (one question each) per product section; "
                                                   "short sections yield fewer."),
        "product_limit": Param(None, type=["null", "integer"], minimum=1, maximum=10000,
                               description="Use only the first N products of the catalog (empty: all)."),
        "generator_model_id": Param(None, type=["null", "string"], maxLength=MODEL_ID_MAX_LENGTH,
                                    pattern=MODEL_ID_PATTERN,
                                    description="Bedrock model id that writes the pairs. Empty: "
                                                "evaluation.generator_model_id from the config."),
        "near_duplicate_threshold": Param(0.8, type="number", minimum=0, maximum=1,
                                          description="Drop a question whose token Jaccard similarity with a kept "
                                                      "or test question of the same product reaches this."),
        "grounding_floor": Param(0.75, type="number", minimum=0, maximum=1,
                                 description="Keep an answer only if this share of its content words (and every "
                                             "figure) appears in its section."),
        "test_fraction": Param(0.25, type="number", exclusiveMinimum=0, exclusiveMaximum=1,
                               description="Share of product sections (not pairs) whose pairs form the test "
                                           "split; at least one section on each side."),
    },
    tags=["qa-dataset", "bedrock", "catalog"],
    doc_md=__doc__,
)
def qa_dataset_build() -> None:
    # A @task call returns an XComArg standing for the value at run time; mypy cannot match it to the task
    # functions' parameter types (apache/airflow#39514), so these references are typed Any.
    plan: Any = plan_dataset()
    candidates: Any = generate_candidates(plan)
    curate_dataset(plan, candidates)


qa_dataset_build()
