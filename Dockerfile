# syntax=docker/dockerfile:1
# tabpipe prediction service. One image serves (default command: gunicorn + gunicorn.conf.py)
# and trains (`docker run IMAGE tabpipe train --config ...`, the compose `train` job).
# No secrets are baked in: MONGODB_URI and AWS credentials come from the environment at run time.

# ---- builder: a self-contained virtual environment with the dependencies and the package ----
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /build
RUN python -m venv /opt/venv

# Dependencies first, so that a code change does not reinstall them (layer cache).
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# The package itself, as a regular (non-editable) install into the venv.
COPY setup.py ./
COPY src ./src
RUN pip install --no-cache-dir --no-deps .

# ---- runtime: the venv, the WSGI entry point, the configs, the data schema and the bundled sample data ----
FROM python:3.11-slim-bookworm AS runtime

ARG VERSION=0.1.0
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="tabpipe" \
      org.opencontainers.image.description="Configuration-driven training and serving of tabular binary classifiers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=8000 \
    TABPIPE_CONFIG=/app/config/pipeline.yaml

RUN groupadd --system --gid 10001 tabpipe \
    && useradd --system --uid 10001 --gid tabpipe --create-home --home-dir /home/tabpipe \
       --shell /usr/sbin/nologin tabpipe

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY app.py gunicorn.conf.py schema.yaml ./
COPY config ./config
COPY data ./data
# Code and configs stay root-owned (read-only to the service); only run outputs are writable:
# config/pipeline.yaml's artifacts_dir and local registry (../artifacts, ../model_registry).
RUN install -d -o tabpipe -g tabpipe /app/artifacts /app/model_registry

USER 10001:10001
EXPOSE 8000

# slim has no curl: probe with the standard library; any non-2xx answer or error exits 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/readyz', timeout=4)"]

CMD ["gunicorn", "--config", "/app/gunicorn.conf.py", "app:app"]
