# syntax=docker/dockerfile:1
# Standalone image of wyoming-qwen3tts: NVIDIA CUDA by default, CPU-only with one build argument.
#
#   docker build -t wyoming-qwen3tts:0.1.0-cuda .
#   docker build --build-arg TORCH_VARIANT=cpu -t wyoming-qwen3tts:0.1.0-cpu .
#   docker run --gpus all -p 10200:10200 -v qwen3tts-data:/data wyoming-qwen3tts:0.1.0-cuda
#
# CUDA: PyTorch's own wheel from PyPI (torch 2.13.0 = CUDA 13.0; the CUDA runtime, cuBLAS and cuDNN come as pip
# packages), so the base is a plain Python image and the host only needs the NVIDIA driver (>= 580 for CUDA 13)
# and the NVIDIA Container Toolkit. CPU: the +cpu wheel from PyTorch's CPU index (amd64 and arm64), ~1 GB
# smaller; the NVIDIA variables below are inert without the toolkit. AMD GPUs: Dockerfile.rocm.
# Everything is pinned: the base image, torch, and every other Python package (docker/constraints.txt).

ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

# ---------------------------------------------------------------------------------------------------------
# Build stage: a virtual environment in /opt/venv, copied whole into the runtime stage (no pip caches, no
# build tools, no sources left behind).
FROM ${PYTHON_IMAGE} AS build

ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cuda
ARG EXTRAS=zeroconf
# Optional flash-attn (e.g. 2.8.3.post2). The engine attends through PyTorch SDPA, which already runs
# FlashAttention kernels on NVIDIA GPUs, so it is not needed; it installs only where flash-attn finds a prebuilt
# wheel for this torch/CUDA/Python (this image has no CUDA compiler to build one).
ARG FLASH_ATTN_VERSION=

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src

# setuptools and wheel build the package below (setuptools is also a dependency of torch, so it stays).
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir "setuptools==84.2.1" "wheel==0.48.0"

# torch first, from the index of the chosen variant, so nothing else can pick another build of it.
RUN case "${TORCH_VARIANT}" in \
        cuda) index="https://pypi.org/simple" ;; \
        cpu) index="https://download.pytorch.org/whl/cpu" ;; \
        *) echo "TORCH_VARIANT must be cuda or cpu (ROCm: Dockerfile.rocm), not '${TORCH_VARIANT}'" >&2; exit 1 ;; \
    esac \
    && /opt/venv/bin/pip install --no-cache-dir --index-url "${index}" "torch==${TORCH_VERSION}"

COPY docker/constraints.txt docker/constraints.txt
COPY pyproject.toml setup.cfg README.md LICENSE ./
COPY wyoming_qwen3tts wyoming_qwen3tts
RUN /opt/venv/bin/pip install --no-cache-dir --no-build-isolation -c docker/constraints.txt ".[${EXTRAS}]" \
    && if [ -n "${FLASH_ATTN_VERSION}" ]; then \
        /opt/venv/bin/pip install --no-cache-dir "ninja==1.13.2" "psutil==7.2.2" "einops==0.8.2" \
        && /opt/venv/bin/pip install --no-cache-dir --no-build-isolation "flash-attn==${FLASH_ATTN_VERSION}"; \
    fi \
    && find /opt/venv -depth -name __pycache__ -type d -exec rm -rf {} +

# ---------------------------------------------------------------------------------------------------------
# Runtime stage.
FROM ${PYTHON_IMAGE}

ARG TORCH_VARIANT=cuda
LABEL org.opencontainers.image.title="wyoming-qwen3tts" \
      org.opencontainers.image.description="Wyoming text-to-speech server running Qwen3-TTS (${TORCH_VARIANT})" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/wyoming-qwen3tts/wyoming-qwen3tts"

# Non-root user; /data (voice library, model cache) is the one place it writes to.
RUN groupadd --system --gid 1000 wyoming \
    && useradd --system --uid 1000 --gid wyoming --home-dir /data --no-create-home --shell /usr/sbin/nologin wyoming \
    && mkdir -p /data/models \
    && chown -R wyoming:wyoming /data

COPY --from=build /opt/venv /opt/venv
COPY docker/defaults.yaml /etc/wyoming-qwen3tts/config.yaml
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/wyoming-qwen3tts-entrypoint

ENV PATH="/opt/venv/bin:${PATH}" \
    WYOMING_QWEN3TTS_CONFIG=/etc/wyoming-qwen3tts/config.yaml \
    HOME=/data \
    HF_HOME=/data/models \
    HF_HUB_DISABLE_TELEMETRY=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER 1000:1000
WORKDIR /data
VOLUME ["/data"]
EXPOSE 10200 8880

# A real describe -> info round trip (a port check stays green while the event loop is wedged). The start period
# covers the first start, which downloads the models (several GB).
HEALTHCHECK --start-period=30m --interval=30s --timeout=15s --retries=3 \
    CMD ["python", "-m", "wyoming_qwen3tts.health_check", "--uri", "tcp://127.0.0.1:10200", "--timeout", "10"]

ENTRYPOINT ["/usr/local/bin/wyoming-qwen3tts-entrypoint"]
