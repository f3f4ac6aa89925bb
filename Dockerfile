# syntax=docker/dockerfile:1
#
# shopflow's Airflow image: the official Airflow 3.3.2 image plus the pinned requirements, the shopflow library
# (include/, installed as the `shopflow` package) and the DAGs and plugins baked in.
#
#   docker compose build          # or: docker build --target airflow -t shopflow-airflow:3.3.2 .
#
# Note: requirements.txt pins torch==2.13.0; on Linux x86_64 PyPI serves the (large) CUDA build of it.

FROM apache/airflow:3.3.2-python3.11 AS airflow

# Where shopflow keeps its landing files, lake and key file (a named volume in docker-compose.yaml).
ENV SHOPFLOW_HOME=/opt/airflow/shopflow-data \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

# Dependencies first, so that editing the code does not reinstall them. The base image's pip installs into
# the airflow user's ~/.local (PIP_USER=true); requirements.txt pins apache-airflow==3.3.2 itself, so pip
# cannot up- or downgrade Airflow.
USER airflow
COPY --chown=airflow:0 requirements.txt /opt/airflow/shopflow-src/requirements.txt
RUN pip install --no-cache-dir -r /opt/airflow/shopflow-src/requirements.txt

# The shopflow library. Its build writes build/ and *.egg-info next to the sources, so they must belong to the
# airflow user; they are removed once the package is installed into site-packages.
USER root
COPY pyproject.toml /opt/airflow/shopflow-src/pyproject.toml
COPY include/ /opt/airflow/shopflow-src/include/
RUN chown -R airflow:0 /opt/airflow/shopflow-src
USER airflow
RUN pip install --no-cache-dir --no-deps /opt/airflow/shopflow-src \
    && rm -rf /opt/airflow/shopflow-src/build /opt/airflow/shopflow-src/include/*.egg-info \
    && python -c "import shopflow.sources as s; s.load_sources()"

# DAGs and the Airflow glue package (the plugins folder is on sys.path in every Airflow component).
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/

# Mount points owned by airflow, so that new named volumes mounted there start out writable by it.
RUN mkdir -p "${SHOPFLOW_HOME}" /opt/airflow/auth /opt/airflow/source-data

USER airflow
