# quantrac service image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ingest ingest
COPY alerts alerts
COPY simulator simulator
COPY quantrac quantrac
COPY config config
RUN pip install --no-cache-dir .
ENV QUANTRAC_CONFIG_DIR=/app/config \
    QUANTRAC_HTTP_HOST=0.0.0.0
EXPOSE 8080
ENTRYPOINT ["quantrac"]
CMD ["run"]
