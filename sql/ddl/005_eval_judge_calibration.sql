-- eval_judge_calibration: each judge of a run against the golden set's human scores (include/data/golden,
-- tailor.golden.calibration): Krippendorff's alpha (interval) and mean absolute error per criterion and 'overall',
-- with the judge prompt's version and the golden set's digest (drift is only compared like with like).
-- Replaced as a whole per run_id.
CREATE TABLE IF NOT EXISTS eval_judge_calibration (
    run_id          VARCHAR(250)     NOT NULL,
    judge_model     VARCHAR(256)     NOT NULL,
    criterion       VARCHAR(64)      NOT NULL,
    prompt_version  VARCHAR(64)      NOT NULL,
    golden_digest   VARCHAR(64)      NOT NULL,
    alpha           DOUBLE PRECISION,
    mae             DOUBLE PRECISION,
    n               INTEGER          NOT NULL,
    CONSTRAINT pk_eval_judge_calibration PRIMARY KEY (run_id, judge_model, criterion)
);
