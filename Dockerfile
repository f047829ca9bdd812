# The assistant's image: `docker build -t assistant .` (see docs/deploy.md).
#
# BASE_IMAGE is any Debian-like image with python3 (3.11+) and its venv module: the official slim
# image by default; the smoke test (tests/docker/smoke.sh) passes a Debian base it builds offline.
# Nothing here assumes the official image's /usr/local layout: python3 and `-m venv` are used.
ARG BASE_IMAGE=python:3.11-slim

# ---- build: the dependencies, in a virtual environment copied whole into the final stage ----
FROM ${BASE_IMAGE} AS build

# Optional package index settings for builds behind a mirror or offline (the smoke test serves
# wheels it downloaded); empty by default, and never part of the final image.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/venv
# Only requirements.txt first: this layer is rebuilt when the dependencies change, not the code.
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir --requirement /tmp/requirements.txt

# ---- final: the venv, the code, a non-root user ----
FROM ${BASE_IMAGE}

# A fixed uid/gid, so a bind-mounted data directory can be chowned to it on the host.
RUN groupadd --system --gid 10001 assistant \
    && useradd --system --uid 10001 --gid assistant --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin assistant

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# The code belongs to root and is read-only for the assistant; .dockerignore lets in only what
# runs (no tests, no .env, no .git). Byte-compiled now, since the user cannot write .pyc files.
COPY . /app
RUN /opt/venv/bin/python -m compileall -q /app \
    && mkdir -p /app/data/conversations \
    && chown -R assistant:assistant /app/data

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ASSISTANT_CONFIG=/app/conf/config.yml \
    MCP_CONFIG=/app/conf/mcp.yml \
    STORE_BACKEND=file \
    STORE_DIR=/app/data/conversations \
    HEALTH_PORT=8080 \
    LOG_FORMAT=json \
    LOG_LEVEL=INFO

# The only writable place: the file store (and the ingress log beside it).
VOLUME ["/app/data"]
USER 10001:10001
EXPOSE 8080

# main.py stops cleanly on SIGTERM (exit 0): the gateway stops polling, actors drain, stores flush.
STOPSIGNAL SIGTERM
# No curl in slim images: the check is Python's urllib (deploy/healthcheck.py).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py"]

CMD ["python", "main.py"]
