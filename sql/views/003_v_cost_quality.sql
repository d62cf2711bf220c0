-- v_cost_quality: per approach of the latest complete run (v_eval_latest), what a month costs against quality.
-- cost_per_quality_point = monthly_cost_usd / (judge_score_mean * 100): dollars per month per judge point on a
-- 0..100 scale; NULL when the judge mean is NULL or 0 (no division by zero on any engine).
DROP VIEW IF EXISTS v_cost_quality;
CREATE VIEW v_cost_quality AS
SELECT
    run_id,
    approach,
    monthly_cost_usd,
    judge_score_mean,
    bertscore_f1_mean,
    CASE
        WHEN judge_score_mean > 0 THEN monthly_cost_usd / (judge_score_mean * 100.0)
    END AS cost_per_quality_point
FROM v_eval_latest;
