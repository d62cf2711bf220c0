-- v_eval_regressions: every significant regression a weekly run found versus the last complete run before it
-- (paired per question, Holm-corrected across the approaches; see eval_finding), with the run's start time.
DROP VIEW IF EXISTS v_eval_regressions;
CREATE VIEW v_eval_regressions AS
SELECT f.run_id, MAX(r.dag_run_started_at) AS run_started_at, f.approach, f.metric, f.delta, f.ci95_low,
       f.ci95_high, f.message
FROM eval_finding f
JOIN eval_run r ON r.run_id = f.run_id
WHERE f.kind = 'regression'
GROUP BY f.run_id, f.approach, f.metric, f.delta, f.ci95_low, f.ci95_high, f.message;
