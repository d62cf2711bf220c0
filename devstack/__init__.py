"""Developer stack: the offline AWS + a project-local Airflow, for ``make demo``, the tests and benchmarks.

It is the only code that knows both sides: it starts ``localaws``, creates the resources ``tailor``'s
settings name, and points Airflow's ``aws_default`` connection at the local endpoint. The DAGs themselves
never import it.
"""
