-- eval_run: one row per DAG run x approach (DESIGN.md §3). Keyed upsert target of tailor.warehouse.Warehouse.
-- Portable: runs unchanged on SQLite (>= 3.24) and PostgreSQL (>= 9.5). Columns may be added, never removed/renamed.
-- Means are over scored samples only (NULL scores are excluded, never averaged as a -1 sentinel).
-- Redshift differences (applied by Warehouse.ensure_schema for dialect 'redshift'):
--   * lines tagged "redshift:skip" are dropped: Redshift has no CHECK constraints (the writer validates instead);
--   * PRIMARY KEY is accepted but NOT enforced on Redshift: uniqueness comes from the writer's MERGE;
--   * TIMESTAMP WITH TIME ZONE = TIMESTAMPTZ; DOUBLE PRECISION = FLOAT8; VARCHAR(n) limits are bytes, not chars;
--   * consider DISTKEY(run_id) SORTKEY(dag_run_started_at) there (not portable, so not written here).
CREATE TABLE IF NOT EXISTS eval_run (
    run_id                  VARCHAR(250)             NOT NULL,  -- Airflow dag_run.run_id (max 250 chars)
    approach                VARCHAR(32)              NOT NULL,  -- 'rag' | 'finetune' | 'hybrid'
    dag_run_started_at      TIMESTAMP WITH TIME ZONE NOT NULL,  -- dag_run.run_after (UTC), never logical_date
    n_samples               INTEGER                  NOT NULL,
    n_scored                INTEGER,
    n_errors                INTEGER,
    bertscore_f1_mean       DOUBLE PRECISION,
    bertscore_f1_std        DOUBLE PRECISION,
    bertscore_f1_ci95_low   DOUBLE PRECISION,
    bertscore_f1_ci95_high  DOUBLE PRECISION,
    judge_score_mean        DOUBLE PRECISION,
    judge_score_std         DOUBLE PRECISION,
    judge_score_ci95_low    DOUBLE PRECISION,
    judge_score_ci95_high   DOUBLE PRECISION,
    key_fact_match          DOUBLE PRECISION,
    retrieval_hit_rate      DOUBLE PRECISION,            -- NULL for approaches without retrieval
    latency_p50_ms          DOUBLE PRECISION,
    latency_p95_ms          DOUBLE PRECISION,
    monthly_cost_usd        DOUBLE PRECISION,
    run_cost_usd            DOUBLE PRECISION,
    dataset_version         VARCHAR(128),
    prompt_version          VARCHAR(128),
    generator_model         VARCHAR(512),
    judge_models            VARCHAR(2048),               -- comma-separated model ids
    status                  VARCHAR(16)              NOT NULL,
    written_at              TIMESTAMP WITH TIME ZONE NOT NULL,
    CONSTRAINT ck_eval_run_status CHECK (status IN ('complete', 'partial', 'failed')),  -- redshift:skip
    CONSTRAINT pk_eval_run PRIMARY KEY (run_id, approach)
);
