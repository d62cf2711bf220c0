-- eval_score: long/tidy scores, one row per run x approach x sample x metric (x judge model x criterion).
-- Portable: runs unchanged on SQLite (>= 3.24) and PostgreSQL (>= 9.5).
-- judge_model / criterion are '' (never NULL) when not applicable, so they can be part of the primary key.
-- score is NULL when a sample could not be scored (see error); NULLs drop out of AVG(), as they should.
-- DOUBLE PRECISION rather than REAL: REAL is 4-byte float4 on PostgreSQL/Redshift (SQLite stores 8 bytes anyway).
-- Redshift differences (applied by Warehouse.ensure_schema for dialect 'redshift'):
--   * lines tagged "redshift:skip" are dropped (no CHECK constraints; the writer validates 0 <= score <= 1);
--   * PRIMARY KEY is not enforced: the writer deletes the (run_id, approach) slice before inserting it;
--   * TEXT would silently become VARCHAR(256) there, hence VARCHAR(65535) (bytes; the writer caps the text).
CREATE TABLE IF NOT EXISTS eval_score (
    run_id       VARCHAR(250)     NOT NULL,
    approach     VARCHAR(32)      NOT NULL,
    sample_id    VARCHAR(128)     NOT NULL,
    metric       VARCHAR(64)      NOT NULL,  -- e.g. 'bertscore_f1', 'judge_score', 'key_fact_match'
    judge_model  VARCHAR(256)     NOT NULL DEFAULT '',
    criterion    VARCHAR(64)      NOT NULL DEFAULT '',
    score        DOUBLE PRECISION,
    rationale    VARCHAR(65535),
    error        VARCHAR(65535),
    CONSTRAINT ck_eval_score_range CHECK (score IS NULL OR (score >= 0 AND score <= 1)),  -- redshift:skip
    CONSTRAINT pk_eval_score PRIMARY KEY (run_id, approach, sample_id, metric, judge_model, criterion)
);
