"""Fine-tuned vs base model on the 45 test questions (BERTScore F1 and key-fact match), through the local AWS.

Runs the real DAGs (catalog sync, monthly fine-tune) on a private local AWS, then asks the champion endpoint
and an endpoint serving the base model the same questions with the same prompt and greedy decoding.
No threshold: honest numbers (a 135M model learns the catalog's wording, not necessarily its facts).
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devstack.stack import REPO, airflow_env, bootstrap, migrate_airflow_db, run_dag


def run() -> tuple[str, bool]:
    home = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    os.environ.update(airflow_env(home / "airflow"))
    from localaws.process import LocalAWSProcess
    from tailor.config import load_settings
    from tailor.generation import invoke_jumpstart
    from tailor.metrics.bertscore import BertScorer
    from tailor.metrics.facts import key_fact_match
    from tailor.metrics.stats import mean_ci
    from tailor.prompts import SYSTEM, llama3_chat
    from tailor.qa import load_qa

    with LocalAWSProcess(log_path=home / "localaws.log") as aws:
        stack = bootstrap(aws.endpoint_url, warehouse_path=home / "warehouse.db")
        os.environ.update(stack.env())
        migrate_airflow_db(os.environ.copy())
        catalog = REPO / "include" / "data" / "catalog" / "industrial_catalog.txt"
        key = "catalog/incoming/" + catalog.name
        stack.client("s3").put_object(Bucket=stack.resources["bucket"], Key=key, Body=catalog.read_bytes())
        assert run_dag("catalog_kb_sync", {"catalog_key": key}).state == "success"
        started = time.monotonic()
        assert run_dag("monthly_finetune").state == "success"
        finetune_seconds = time.monotonic() - started
        cfg = load_settings()
        ft = cfg.finetune
        sagemaker, runtime = stack.client("sagemaker"), stack.client("sagemaker-runtime")
        sagemaker.create_model(ModelName="base", ExecutionRoleArn=ft.role_arn,
                               PrimaryContainer={"Image": ft.inference_image_uri, "ModelDataUrl": ft.base_model_uri})
        sagemaker.create_endpoint_config(EndpointConfigName="base", ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": "base", "InitialInstanceCount": 1,
            "InstanceType": ft.endpoint_instance_type}])
        sagemaker.create_endpoint(EndpointName="base", EndpointConfigName="base")
        items = load_qa(cfg.qa.test_set).items
        scorer = BertScorer(cfg.metrics.bertscore_model, cfg.metrics.bertscore_layers)
        rows = []
        for label, endpoint in (("base SmolLM2-135M-Instruct", "base"), ("fine-tuned (champion)", ft.champion_endpoint)):
            def ask(item, endpoint=endpoint):  # noqa: ANN001, ANN202
                return invoke_jumpstart(runtime, endpoint, llama3_chat(SYSTEM, item.question),
                                        max_new_tokens=cfg.evaluation.max_tokens).text
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(ask, items))
            f1 = [s[2] for s in scorer.score(answers, [i.answer for i in items])]
            facts = [key_fact_match(a, i.answer) for a, i in zip(answers, items, strict=True)]
            summary, fact_summary = mean_ci(f1), mean_ci(facts)
            rows.append(f"| {label} | {summary.n} | {summary.mean:.4f} | [{summary.ci_low:.4f}, {summary.ci_high:.4f}] "
                        f"| {fact_summary.mean:.3f} |")
    section = "\n".join([
        "## Fine-tuned vs base model (local)",
        f"The 45 test questions, same prompt, greedy decoding, {os.environ['TAILOR__EVALUATION__MAX_TOKENS']} new "
        f"tokens; BERTScore F1 with SmolLM2 layers 1-8. monthly_finetune took {finetune_seconds:.0f} s "
        f"(2 epochs of the top 10 layers on the catalog text). No goal: reported as measured.",
        "",
        "| model | n | mean BERTScore F1 | 95% CI | key-fact match |",
        "|---|---|---|---|---|",
        *rows,
    ])
    return section, True


if __name__ == "__main__":
    print(run()[0])
