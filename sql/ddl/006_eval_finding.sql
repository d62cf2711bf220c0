-- eval_finding: what a weekly run alerted on (tailor.alerts): a significant regression of an approach versus the last
-- complete run (paired, Holm-corrected; delta and its 95% interval), judge drift against the golden set, a partial
-- run. Replaced as a whole per run_id. v_eval_regressions lists the regressions.
CREATE TABLE IF NOT EXISTS eval_finding (
    run_id       VARCHAR(250)     NOT NULL,
    seq          INTEGER          NOT NULL,  -- order within the run
    kind         VARCHAR(32)      NOT NULL,  -- 'regression' | 'judge_drift' | 'partial_run'
    approach     VARCHAR(32),
    metric       VARCHAR(64),
    delta        DOUBLE PRECISION,
    ci95_low     DOUBLE PRECISION,
    ci95_high    DOUBLE PRECISION,
    message      VARCHAR(4096)    NOT NULL,
    CONSTRAINT pk_eval_finding PRIMARY KEY (run_id, seq)
);
