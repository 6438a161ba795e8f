# One image for every hedgebridge service: `docker run hedgebridge gateway|executor|coordinator|monitor|sim ...`.
# Build stage: the wheels of hedgebridge and its dependencies. Final stage: a slim Python with those wheels
# only (no compiler, no pip cache, no sources), run as an unprivileged user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs libs
COPY services services
COPY cli cli
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 --user-group hedgebridge
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
WORKDIR /home/hedgebridge
# Health endpoints (/healthz, /readyz, /metrics): the gateway on its WebSocket port, the other services on 8080.
ENV HEDGEBRIDGE_GATEWAY_HOST=0.0.0.0 \
    HEDGEBRIDGE_EXECUTOR_HEALTH_PORT=8080 \
    HEDGEBRIDGE_COORDINATOR_HEALTH_PORT=8080 \
    HEDGEBRIDGE_MONITOR_HEALTH_PORT=8080 \
    HEDGEBRIDGE_HEALTHCHECK_PORT=8080 \
    HEDGEBRIDGE_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
EXPOSE 8765 8080
# The container is healthy while the service's /healthz answers 200 (the gateway's container sets
# HEDGEBRIDGE_HEALTHCHECK_PORT=8765).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HEDGEBRIDGE_HEALTHCHECK_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["hedgebridge"]
CMD ["gateway"]
