# The Airflow image for docker-compose, MWAA-like deployments and Astro (same requirements.txt).
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt constraints.txt /requirements/
RUN pip install --no-cache-dir -r /requirements/requirements.txt -c /requirements/constraints.txt
ENV PYTHONPATH=/opt/airflow/include:/opt/airflow/plugins
