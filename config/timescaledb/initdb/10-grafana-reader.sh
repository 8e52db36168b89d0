#!/bin/bash
# Run once by the PostgreSQL image's entrypoint, on the first start of an empty data directory
# (/docker-entrypoint-initdb.d): a login role that can read every table, now and future ones,
# and write none. Grafana connects with it; GRAFANA_DB_USER / GRAFANA_DB_PASSWORD come from
# docker-compose.yml. To change the password later: ALTER ROLE ... PASSWORD in psql.
set -e

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v reader="${GRAFANA_DB_USER:-grafana_reader}" \
    -v reader_password="${GRAFANA_DB_PASSWORD:?GRAFANA_DB_PASSWORD is not set}" <<'EOSQL'
CREATE ROLE :"reader" LOGIN PASSWORD :'reader_password';
GRANT pg_read_all_data TO :"reader";
ALTER ROLE :"reader" SET default_transaction_read_only = on;
ALTER ROLE :"reader" SET statement_timeout = '30s';
EOSQL
