# syntax=docker/dockerfile:1
# tfserving-autoscaler daemon image. Multi-stage: wheels are built in the first stage; the runtime
# stage has only the package and its runtime dependencies, runs as a non-root user and works with a
# read-only root filesystem. TensorFlow (for the optional gRPC model-status client) is only included
# with --build-arg EXTRAS=tfserving.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ARG EXTRAS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY autoscaler ./autoscaler
# what-if inputs, shipped as package data so `simulate` and `sweep` work in the image (setup.py)
COPY simulations ./simulations
COPY examples ./examples
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip==25.3 \
 && /opt/venv/bin/pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="tfserving-autoscaler" \
      org.opencontainers.image.description="SLO-driven predictive autoscaler for TensorFlow Serving on Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/tfserving-autoscaler/tfserving-autoscaler"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --system --gid 10001 autoscaler \
 && useradd --system --uid 10001 --gid autoscaler --no-create-home --shell /usr/sbin/nologin autoscaler
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080 6443 9000
ENTRYPOINT ["tfserving-autoscaler"]
CMD ["run", "--spec-dir=/etc/tfs-autoscaler/specs"]
