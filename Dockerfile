# quantrac service image (used by docker-compose.yml for `quantrac run` and `quantrac alerts`).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY quantrac quantrac
COPY config config
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin quantrac
ENV QUANTRAC_CONFIG_DIR=/app/config \
    QUANTRAC_HTTP_HOST=0.0.0.0 \
    QUANTRAC_HTTP_PORT=8080
USER quantrac
EXPOSE 8080
# /healthz answers 503 while the broker or the database is unreachable; urlopen raises on it.
# `quantrac alerts` serves no HTTP: docker-compose.yml switches this check off for it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=4 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('QUANTRAC_HTTP_PORT', '8080'), timeout=3)"]
ENTRYPOINT ["quantrac"]
CMD ["run"]
