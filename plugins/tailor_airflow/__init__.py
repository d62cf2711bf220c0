"""Airflow-facing pieces of the bake-off: assets, triggers, sensors, operators and shared task groups.

``plugins/`` is on ``sys.path`` in every Airflow component (the triggerer included), which is why triggers
live here and not in ``dags/``. Logic stays in the plain-Python ``tailor`` package under ``include/``.
"""
