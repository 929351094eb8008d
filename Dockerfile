# activation-service container image.
# Build stage: install the pinned dependencies and the service into a venv.
FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# A C compiler for the core's compiled first tier (service/activations/_kernel*.c); the final
# stage gets only the built module. Debian's packages of the base image's release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# Dependencies first: this layer is reused until the lock file changes.
COPY deploy/requirements.lock ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-compile -r requirements.lock
COPY pyproject.toml README.md ./
COPY service ./service
RUN /opt/venv/bin/pip install --no-deps --no-compile . \
 && /opt/venv/bin/python -m compileall -q /opt/venv

# Final stage: the venv only, no build tools, a non-root user.
FROM python:3.12-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ACTIVATION_HOST=0.0.0.0 \
    ACTIVATION_PORT=8000
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['ACTIVATION_PORT'], timeout=2).status != 200)"]
# Settings come from ACTIVATION_* variables (no flags here, so operators can override every one).
CMD ["python", "-m", "service"]
