"""tailor: plain-Python core of the RAG vs fine-tuning vs hybrid bake-off.

Nothing here imports Airflow; the DAGs (dags/) and the Airflow-facing pieces (plugins/) build on it.
"""
