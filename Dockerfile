# zapi-queue worker and Flower image: slim, non-root, dependencies pinned by .ci/constraints.txt.
FROM python:3.11-slim

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
RUN pip install -c constraints.txt . && useradd --create-home --uid 10001 zapi
USER zapi

# The shipped defaults (pool, concurrency, acks, prefetch) come from the app's config.
CMD ["celery", "-A", "worker", "worker"]
