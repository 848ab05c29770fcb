# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target server -t REGISTRY/teresa:TAG .        Teresa itself
#   docker build --target stack  -t REGISTRY/teresa-stack:TAG .  where slugs are built and run
# Base images are pinned by tag and by the digest of their multi-architecture index.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
ARG NODE_IMAGE=node:22.20.0-bookworm-slim@sha256:b21fe589dfbe5cc39365d0544b9be3f1f33f55f3c86c87a76ff65a02f8f5848e
ARG GO_IMAGE=golang:1.25.3-bookworm@sha256:4f43b271f9673eb7bd0cb3a49cc17b08d8d6ee110277e26dbacc93c43a5a7793

# --- Teresa installed into a virtualenv, shared by both images -----------------
FROM ${PYTHON_IMAGE} AS venv
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/teresa
WORKDIR /src
COPY pyproject.toml ./
COPY core core
COPY keys keys
COPY builder builder
COPY controller controller
COPY gitreceiver gitreceiver
COPY server server
RUN /opt/teresa/bin/pip install --no-compile . \
    && /opt/teresa/bin/python -m compileall -q /opt/teresa/lib

FROM ${NODE_IMAGE} AS node
FROM ${GO_IMAGE} AS go

# --- server: `teresa serve` --------------------------------------------------
FROM ${PYTHON_IMAGE} AS server
ARG APP_UID=10001
ENV PATH=/opt/teresa/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TERESA_DATA_DIR=/var/lib/teresa \
    TERESA_SSH_ADDR=0.0.0.0:2222 \
    TERESA_HTTP_ADDR=0.0.0.0:8081 \
    TERESA_LOG_FORMAT=json
RUN groupadd --system --gid ${APP_UID} teresa \
    && useradd --system --uid ${APP_UID} --gid ${APP_UID} --home-dir /var/lib/teresa --no-create-home --shell /usr/sbin/nologin teresa \
    && install -d -o ${APP_UID} -g ${APP_UID} -m 0750 /var/lib/teresa
COPY --from=venv /opt/teresa /opt/teresa
WORKDIR /var/lib/teresa
VOLUME ["/var/lib/teresa"]
USER ${APP_UID}:${APP_UID}
EXPOSE 2222 8081
HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=4)"]
ENTRYPOINT ["teresa"]
CMD ["serve"]

# --- stack: runs teresa-slugbuilder and teresa-slugrunner ----------------------
FROM ${PYTHON_IMAGE} AS stack
ARG APP_UID=10001
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# What the built-in buildpacks call: git, curl, tar/gzip/unzip, a C toolchain and
# the headers common native Python and Node packages build against. Node.js (with npm and
# corepack, which fetches yarn and pnpm) and Go come from their official images, pinned above.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        bash ca-certificates curl git gzip tar unzip xz-utils \
        build-essential pkg-config libffi-dev libssl-dev zlib1g-dev libpq-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
COPY --from=go /usr/local/go /usr/local/go
COPY --from=venv /opt/teresa /opt/teresa
# The stack's Pythons: the base image's 3.11 plus 3.12, 3.13 and 3.14 (relocatable CPython builds that
# the pinned uv knows, in /opt/python/<name>/bin). The buildpack also uses this uv for uv.lock apps.
ARG UV_VERSION=0.13.9
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed
RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
    && uv python install --no-bin 3.12 3.13 3.14 \
    && for dir in /opt/python/cpython-*; do ln -sfn "$dir" "/opt/python/$(basename "$dir" | cut -d- -f2 | cut -d. -f1-2)"; done \
    && rm -rf /root/.cache
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && ln -s ../lib/node_modules/corepack/dist/corepack.js /usr/local/bin/corepack \
    && ln -s /opt/teresa/bin/teresa-slugbuilder /usr/local/bin/teresa-slugbuilder \
    && ln -s /opt/teresa/bin/teresa-slugrunner /usr/local/bin/teresa-slugrunner \
    && groupadd --gid ${APP_UID} app \
    && useradd --uid ${APP_UID} --gid ${APP_UID} --home-dir /app --no-create-home --shell /bin/bash app \
    && install -d -o ${APP_UID} -g ${APP_UID} /app
# The runtimes buildpacks choose from: an explicit list (see docs/buildpacks.md), never a PATH search.
ENV PATH=/usr/local/go/bin:$PATH \
    TERESA_STACK_PYTHONS="3.11=/usr/local/bin/python3.11 3.12=/opt/python/3.12/bin/python3 3.13=/opt/python/3.13/bin/python3 3.14=/opt/python/3.14/bin/python3" \
    TERESA_STACK_NODES="/usr/local/bin/node" \
    GOTOOLCHAIN=local \
    PYTHONUNBUFFERED=1 \
    TERESA_APP_DIR=/app \
    HOME=/app
WORKDIR /app
USER ${APP_UID}:${APP_UID}
# The slug runner's init as PID 1: it passes signals to the command's process group and waits for all of it
# (builder/slug_init.py). The pods Teresa renders say the same in their command, as does hack/cluster/images.
ENTRYPOINT ["teresa-slugrunner", "init", "--"]
CMD ["teresa-slugrunner", "start", "web"]
