-- v_eval_trend: one row per run x approach over time, for trend charts (all statuses; filter on status in BI).
-- run_date = DATE(dag_run_started_at): SQLite returns 'YYYY-MM-DD' text (UTC); PostgreSQL/Redshift return a DATE in
-- the session time zone. The ORDER BY is a convenience for ad-hoc queries; BI tools should order explicitly.
DROP VIEW IF EXISTS v_eval_trend;
CREATE VIEW v_eval_trend AS
SELECT
    DATE(dag_run_started_at) AS run_date,
    dag_run_started_at,
    run_id,
    approach,
    status,
    n_samples,
    n_scored,
    bertscore_f1_mean,
    judge_score_mean,
    key_fact_match,
    retrieval_hit_rate,
    latency_p50_ms,
    latency_p95_ms,
    monthly_cost_usd,
    run_cost_usd
FROM eval_run
ORDER BY dag_run_started_at, run_id, approach;
