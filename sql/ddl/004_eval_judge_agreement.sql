-- eval_judge_agreement: how far the run's judges agree, Krippendorff's alpha (interval) per criterion and 'overall'
-- (tailor.metrics.agreement); alpha is NULL when it cannot be measured (one judge, no variation). Replaced per run_id.
CREATE TABLE IF NOT EXISTS eval_judge_agreement (
    run_id       VARCHAR(250)     NOT NULL,
    criterion    VARCHAR(64)      NOT NULL,
    judge_models VARCHAR(1024)    NOT NULL,
    alpha        DOUBLE PRECISION,
    CONSTRAINT pk_eval_judge_agreement PRIMARY KEY (run_id, criterion)
);
