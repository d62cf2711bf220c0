-- v_eval_latest: the eval_run rows of the most recent run (by dag_run_started_at, then run_id) in which EVERY
-- approach the run wrote has status 'complete'. A run with any partial/failed approach is skipped as a whole.
-- Portable SQLite (>= 3.25, window functions) / PostgreSQL / Redshift. "CREATE VIEW IF NOT EXISTS" is not portable,
-- so every view file drops and recreates. v_cost_quality depends on this view: drop it first (no CASCADE in SQLite);
-- 003_v_cost_quality.sql recreates it. SELECT r.* is expanded at creation: re-run ensure_schema after adding columns.
DROP VIEW IF EXISTS v_cost_quality;
DROP VIEW IF EXISTS v_eval_latest;
CREATE VIEW v_eval_latest AS
WITH complete_runs AS (
    SELECT run_id, MAX(dag_run_started_at) AS started_at
    FROM eval_run
    GROUP BY run_id
    HAVING SUM(CASE WHEN status = 'complete' THEN 0 ELSE 1 END) = 0
),
ranked AS (
    SELECT run_id, ROW_NUMBER() OVER (ORDER BY started_at DESC, run_id DESC) AS rn
    FROM complete_runs
)
SELECT r.*
FROM eval_run r
JOIN ranked k ON k.run_id = r.run_id AND k.rn = 1;
