# One image for every hedgebridge service: `docker run hedgebridge gateway|executor|monitor|sim ...`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs libs
COPY services services
COPY cli cli
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 hedgebridge
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
ENV HEDGEBRIDGE_GATEWAY_HOST=0.0.0.0 \
    HEDGEBRIDGE_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
EXPOSE 8765
ENTRYPOINT ["hedgebridge"]
CMD ["gateway"]
