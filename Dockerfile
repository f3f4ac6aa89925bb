# syntax=docker/dockerfile:1
#
# shopflow's images; docker-compose.yaml builds both:
#   airflow      the official Airflow 3.3.2 image + the pinned requirements with the CPU build of torch. Every
#                Airflow component and the default-queue Celery worker run from it.
#   airflow-gpu  a CUDA runtime image + Python 3.11 + the same pinned requirements with the CUDA build of torch:
#                the Celery worker of the `gpu` queue (model.train).
# Both: the shopflow library (include/, installed as the `shopflow` package), the DAGs and plugins baked in, user
# `airflow` (uid 50000, gid 0, as in the official image) so that both read and write the same named volumes.
#
#   docker compose build     # or: docker build --target airflow -t shopflow-airflow:3.3.2 .
#                            #     docker build --target airflow-gpu -t shopflow-airflow-gpu:3.3.2 .

# torch: the same version as requirements.txt (tests/deployment/test_deployment_files.py checks it).
ARG TORCH_VERSION=2.13.0
# The CUDA build of torch 2.13.0 on PyPI (Linux x86_64) is built for CUDA 13.0 and brings its own CUDA and cuDNN
# libraries as wheels; the base image adds the CUDA runtime environment the NVIDIA container toolkit expects.
# CUDA 13.0 needs an NVIDIA driver >= 580 on the host.
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-runtime-ubuntu24.04
# Python 3.11 for the CUDA image: a python-build-standalone build installed by uv (both pinned; uv stays in the
# builder stage).
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8
ARG PYTHON_VERSION=3.11.14

# --- airflow: the official image ------------------------------------------------------------------------------
FROM apache/airflow:3.3.2-python3.11 AS airflow
ARG TORCH_VERSION

# Where shopflow keeps its landing files, lake, models and reports (a named volume in docker-compose.yaml).
ENV SHOPFLOW_HOME=/opt/airflow/shopflow-data \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

# Dependencies first, so that editing the code does not reinstall them. The base image's pip installs into the
# airflow user's ~/.local (PIP_USER=true). torch first from PyTorch's CPU index (no CUDA libraries in this image):
# the pin torch==2.13.0 in requirements.txt is then already satisfied by 2.13.0+cpu. requirements.txt pins
# apache-airflow==3.3.2 itself, so pip cannot up- or downgrade Airflow.
USER airflow
COPY --chown=airflow:0 requirements.txt /opt/airflow/shopflow-src/requirements.txt
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}+cpu" \
    && pip install --no-cache-dir -r /opt/airflow/shopflow-src/requirements.txt

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

# --- uv: only to fetch Python for the CUDA image ----------------------------------------------------------------
FROM ${UV_IMAGE} AS uv

# --- airflow-gpu-build: Python 3.11 + a virtualenv with the requirements, CUDA torch, shopflow ------------------
FROM ${CUDA_IMAGE} AS airflow-gpu-build
ARG PYTHON_VERSION
ARG TORCH_VERSION
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_NO_CACHE=1
RUN uv python install "${PYTHON_VERSION}" \
    && uv venv --python "${PYTHON_VERSION}" /opt/venv
# PyPI's torch==2.13.0 for Linux x86_64 is the CUDA build (CUDA 13.0); the check makes sure that is what came.
COPY requirements.txt /opt/shopflow-src/requirements.txt
RUN uv pip install --python /opt/venv/bin/python -r /opt/shopflow-src/requirements.txt "torch==${TORCH_VERSION}" \
        "dumb-init==1.2.5.post1" \
    && /opt/venv/bin/python -c "import torch; assert torch.version.cuda, torch.__version__; print(torch.__version__)"
COPY pyproject.toml /opt/shopflow-src/pyproject.toml
COPY include/ /opt/shopflow-src/include/
RUN uv pip install --python /opt/venv/bin/python --no-deps /opt/shopflow-src \
    && /opt/venv/bin/python -c "import shopflow.sources as s; s.load_sources()"

# --- airflow-gpu: the runtime image of the gpu-queue worker (no uv, pip, compiler or package cache) ----------
FROM ${CUDA_IMAGE} AS airflow-gpu
COPY --from=airflow-gpu-build /opt/python /opt/python
COPY --from=airflow-gpu-build /opt/venv /opt/venv
# Same user, home and layout as the official image: uid 50000, group 0, AIRFLOW_HOME=/opt/airflow.
RUN useradd --uid 50000 --gid 0 --home-dir /opt/airflow --create-home --shell /bin/bash airflow \
    && mkdir -p /opt/airflow/dags /opt/airflow/plugins /opt/airflow/logs /opt/airflow/shopflow-data \
        /opt/airflow/source-data \
    && chown -R airflow:0 /opt/airflow && chmod -R g+rwX /opt/airflow
ENV PATH=/opt/venv/bin:${PATH} \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    SHOPFLOW_HOME=/opt/airflow/shopflow-data \
    PYTHONUNBUFFERED=1
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
WORKDIR /opt/airflow
# dumb-init forwards signals to the worker (docker-compose.yaml sets DUMB_INIT_SETSID=0 for Celery's warm shutdown).
ENTRYPOINT ["/opt/venv/bin/dumb-init", "--"]
CMD ["airflow", "celery", "worker", "--queues", "gpu", "--concurrency", "1"]
USER airflow
