# The assistant's image: `docker build -t assistant .` (see docs/deploy.md).
#
# BASE_IMAGE is any Debian-like image with python3 (3.11+) and its venv module: the official slim
# image by default; the smoke test (tests/docker/smoke.sh) passes a Debian base it builds offline.
# Nothing here assumes the official image's /usr/local layout: python3 and `-m venv` are used.
ARG BASE_IMAGE=python:3.11-slim

# ---- build: the dependencies, in a virtual environment copied whole into the final stage ----
FROM ${BASE_IMAGE} AS build

# Optional package index settings for builds behind a mirror or offline (the smoke test serves
# wheels it downloaded); empty by default, and never part of the final image. (The one Debian
# package of the build stage, binutils, comes from the base image's own apt sources.)
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# strip (binutils), for the build stage only. Any Debian release's own version: nothing to pin.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
# Only requirements.txt first: this layer is rebuilt when the dependencies change, not the code.
COPY requirements.txt /tmp/requirements.txt
# Only what runs goes on to the final stage (what each step saved on the smoke test's Debian base,
# docs/deploy.md "Image size"):
# - pip and setuptools leave the venv: nothing is installed at run time (23 MB);
# - botocore keeps the API data of the services the assistant calls: DynamoDB and SQS, and STS
#   and SSO for credentials (17 MB);
# - bytecode is compiled once, here (pip compiles nothing), next to each module, and the sources
#   of the dependencies go: the container runs bytecode only and never compiles at start, where
#   its read-only files could not keep what it compiled (35 MB; without bytecode at all, start-up
#   took 80% more CPU). Tracebacks show the dependencies' frames without their source lines;
#   the assistant's own code keeps its sources;
# - shared libraries lose their symbol tables, as Debian's own packages do (14 MB).
# The last line proves the result imports and that botocore still has the services it needs.
RUN /opt/venv/bin/pip install --no-cache-dir --no-compile --requirement /tmp/requirements.txt \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet pip setuptools \
    && site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && find "$site/botocore/data" -mindepth 1 -maxdepth 1 -type d \
         ! -name dynamodb ! -name sqs ! -name sts ! -name sso ! -name sso-oidc -exec rm -rf {} + \
    && /opt/venv/bin/python -m compileall -q -b -j 0 "$site" \
    && find "$site" \( -name '*.py' -o -name __pycache__ \) -prune -exec rm -rf {} + \
    && find "$site" -name '*.so' -exec strip --strip-unneeded {} + \
    && /opt/venv/bin/python -c 'import botocore.session as b, openai, anthropic, telegram, mcp, aiobotocore; s = b.get_session(); [s.get_service_model(n) for n in ("dynamodb", "sqs", "sts")]'

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
