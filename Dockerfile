# attnviz for the Hugging Face Docker SDK (or any Docker host): serves the app on port 7860.
#   docker build -t attnviz .                                                   # CUDA-ready torch
#   docker build -t attnviz --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
#   docker run -p 7860:7860 attnviz                  # add --gpus all on a GPU host
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# OpenCV (headless) and PyTorch's CPU kernels need these at run time
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# Spaces run the container as uid 1000
RUN useradd -m -u 1000 user
USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH
# created by the user, not by WORKDIR (the classic builder and kaniko make WORKDIR root-owned),
# so models trained in the app can be written to runs/
RUN mkdir -p /home/user/app/runs
WORKDIR /home/user/app

# dependencies first (cached while only the code changes); an optional torch index for a
# CPU-only image
ARG TORCH_INDEX_URL=
COPY --chown=user requirements.txt ./
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --user torch==2.13.0 --index-url "$TORCH_INDEX_URL"; \
    fi \
    && pip install --user -r requirements.txt

# the app, the library, the shipped lite checkpoints (+ cards) and the examples
COPY --chown=user app.py ./
COPY --chown=user attnviz ./attnviz
COPY --chown=user models ./models
COPY --chown=user assets ./assets

# listen on every interface; public ImageNet weights may be downloaded (cached in ~/.cache)
ENV GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    ATTNVIZ_ALLOW_DOWNLOAD=1 \
    GRADIO_ANALYTICS_ENABLED=False

EXPOSE 7860
CMD ["python", "app.py"]
