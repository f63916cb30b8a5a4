# The streamproc worker. Built by compose/docker-compose.yml; on its own:
#   docker build -t streamproc-worker .                     # CUDA build of torch (PyPI)
#   docker build -t streamproc-worker:cpu \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .   # smaller, CPU only
#   docker build -t streamproc-worker:fp8 --build-arg EXTRAS=fp8 .   # + torchao (generation.fp8)
# Configuration comes from STREAMPROC_* environment variables (docs/configuration.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    STREAMPROC_LOG__FORMAT=json \
    STREAMPROC_METRICS__PORT=9464

# libgomp: OpenMP of torch and FAISS on the CPU.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ARG TORCH_INDEX_URL=
ARG EXTRAS=
COPY pyproject.toml README.md ./
COPY streamproc ./streamproc
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" "torch==2.13.0"; fi \
    && pip install ".${EXTRAS:+[$EXTRAS]}"

RUN useradd --create-home --uid 10001 streamproc \
    && mkdir -p /var/cache/streamproc/compile && chown -R streamproc /var/cache/streamproc
# generation.compile_cache_dir: mount a volume here so restarts reuse compiled graphs.
VOLUME /var/cache/streamproc/compile
USER streamproc
# Outputs of the embedded transport land here when it is used.
WORKDIR /home/streamproc

EXPOSE 9464
# The HTTP gateway (streamproc gateway), when the container runs it.
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=300s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STREAMPROC_METRICS__PORT', '9464'), timeout=3)"

ENTRYPOINT ["streamproc"]
CMD ["run", "--transport", "kafka"]
