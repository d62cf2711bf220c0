-- eval_paired: the verdict between approaches, question by question: one row per run x metric x pair of approaches
-- (tailor.metrics.paired: paired bootstrap 95% interval of the mean difference a - b, Wilcoxon signed-rank p, Holm
-- across the pairs of a metric, minimum detectable effect at 80% power). Replaced as a whole per run_id.
-- Portable SQLite / PostgreSQL; on Redshift PRIMARY KEY is not enforced (the writer deletes the run's rows first).
CREATE TABLE IF NOT EXISTS eval_paired (
    run_id       VARCHAR(250)     NOT NULL,
    metric       VARCHAR(64)      NOT NULL,
    approach_a   VARCHAR(32)      NOT NULL,
    approach_b   VARCHAR(32)      NOT NULL,
    n            INTEGER          NOT NULL,  -- questions both approaches have a score for
    mean_a       DOUBLE PRECISION,
    mean_b       DOUBLE PRECISION,
    mean_diff    DOUBLE PRECISION,           -- mean of (a - b) over those questions
    ci95_low     DOUBLE PRECISION,
    ci95_high    DOUBLE PRECISION,
    p_value      DOUBLE PRECISION,
    p_holm       DOUBLE PRECISION,
    significant  BOOLEAN          NOT NULL,
    winner       VARCHAR(32),
    mde          DOUBLE PRECISION,           -- minimum detectable effect for this n and spread
    verdict      VARCHAR(1024)    NOT NULL,
    CONSTRAINT pk_eval_paired PRIMARY KEY (run_id, metric, approach_a, approach_b)
);
