# syntax=docker/dockerfile:1
#
# reusely-gateway image: two stages on the same slim Python base.
#   builder: a venv at /opt/venv with the dependencies (from pyproject.toml
#            only, so source edits keep this layer), then the gateway itself
#            installed to /opt/app.
#   final:   the venv and /opt/app, no pip, no compiler, numeric non-root user.
#
# Runtime expectations: the root filesystem can be read-only; /tmp must be
# writable (a tmpfs / emptyDir): PROMETHEUS_MULTIPROC_DIR=/tmp/metrics lives
# there and `serve` empties it at start. Nothing else is written.
#
#   docker build -t reusely-gateway .
#   docker run --rm -p 8080:8080 -p 9464:9464 --read-only --tmpfs /tmp \
#     --env-file .env reusely-gateway

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# The venv gets no pip of its own: the builder's pip installs into it
# (pip --python), so there is nothing to remove afterwards.
RUN python -m venv --without-pip /opt/venv \
 && echo /opt/app > /opt/venv/lib/python3.11/site-packages/reusely-gateway-app.pth

# Dependencies first, read from [project].dependencies: this layer depends on
# pyproject.toml alone and survives every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && python -m pip --python /opt/venv/bin/python install --no-cache-dir --requirement /tmp/requirements.txt

# Then the gateway itself, into /opt/app (on the venv's path through the .pth
# file above), so the final image's venv layer does not change with the code.
COPY README.md ./
COPY gateway/ ./gateway/
RUN python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps --target /opt/app . \
 && /opt/venv/bin/python -c "import gateway.cli"


FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="reusely-gateway" \
      org.opencontainers.image.description="API gateway in front of Reusely's public API: holds the credentials, applies access rules and rate limits" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/reusely/reusely-gateway" \
      org.opencontainers.image.licenses="Proprietary" \
      org.opencontainers.image.vendor="Reusely" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# No package installer in the final image: drop the base image's pip,
# setuptools and wheel (the venv never had any), and add the runtime user.
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
 && rm -rf /usr/local/lib/python3.11/ensurepip /usr/local/bin/pip* \
 && groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
 && install -d -o 10001 -g 10001 -m 0770 /tmp/metrics

ENV PATH=/opt/venv/bin:/opt/app/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/metrics \
    GATEWAY_BIND=0.0.0.0:8080 \
    GATEWAY_METRICS_BIND=0.0.0.0:9464

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/app /opt/app

# GATEWAY_CONFIG defaults to config/gateway.yaml relative to the working dir.
WORKDIR /app
COPY config/gateway.yaml /app/config/gateway.yaml

USER 10001:10001

EXPOSE 8080 9464

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]

# Exec form: gunicorn is PID 1 and gets SIGTERM (drain) and SIGHUP (reload).
CMD ["reusely-gateway", "serve", "--bind", "0.0.0.0:8080", "--metrics-bind", "0.0.0.0:9464"]
