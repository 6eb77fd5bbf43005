# zapi-queue worker and Flower image: slim, non-root, dependencies pinned by pyproject.toml ranges.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY config ./config
COPY tasks ./tasks
COPY worker ./worker
RUN pip install . && useradd --create-home --uid 10001 zapi
USER zapi

# The shipped defaults (pool, concurrency, acks, prefetch) come from the app's config.
CMD ["celery", "-A", "worker", "worker"]
