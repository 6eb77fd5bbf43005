# zapi-queue worker and Flower image: slim, non-root, dependencies pinned by .ci/constraints.txt.
#
# The base image is pinned by digest (the multi-platform index digest), through a build
# argument so that an air-gapped build or CI substitutes a mirror or a local stand-in without
# editing this file:
#   docker build --build-arg PYTHON_IMAGE=registry.example/python:3.11-slim .
# (docker-compose.yml passes PYTHON_IMAGE through.) The digest is python:3.11.15-slim's as
# docker-library/repo-info records it (repos/python/remote/3.11.15-slim.md, commit 2477d553,
# built 2026-08-05, Debian trixie). To refresh it: read that file's first `docker pull
# python@sha256:...` line (the index, "Manifest MIME: ...image.index...") at repo-info's HEAD,
# or run `docker buildx imagetools inspect python:3.11-slim` and take its top "Digest:".
ARG PYTHON_IMAGE=python:3.11.15-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff
FROM ${PYTHON_IMAGE} AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY .ci/constraints.txt ./constraints.txt
COPY config ./config
COPY tasks ./tasks
COPY worker ./worker
# Exact versions: the ones the test suite ran with (.ci/constraints.txt).
RUN pip install -c constraints.txt ".[otel]" && useradd --create-home --uid 10001 zapi
USER zapi

# The shipped defaults (pool, concurrency, acks, prefetch) come from the app's config.
CMD ["celery", "-A", "worker", "worker"]

# `--target sim`: the same image with the development tools (devtools/: the fake Z-API), for
# compose's `sim` profile only; the production image (the default, last stage) has none.
FROM app AS sim
COPY devtools ./devtools
CMD ["python", "-m", "devtools.zapi_sim", "--host", "0.0.0.0", "--port", "8080"]

FROM app
