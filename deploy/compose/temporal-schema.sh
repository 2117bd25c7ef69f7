#!/bin/sh
# One-shot (docker-compose.yml service `temporal-schema`, image temporalio/admin-tools): creates
# Temporal's two databases on the compose PostgreSQL and brings their schemas to the version this
# admin-tools image ships, the way Temporal's own compose samples do. Safe to run on every
# `docker compose up`: on a second run the databases and the base schema exist (those two steps
# say so and go on), and update-schema applies only what is missing; a real failure still stops it
# there, since update-schema needs the base schema.
set -eu
: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
sql() { temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "${DB_PORT:-5432}" -u "$POSTGRES_USER" "$@"; }
for db in temporal temporal_visibility; do
  sql --db "$db" create || echo "database $db exists"
  sql --db "$db" setup-schema -v 0.0 || echo "database $db has its base schema"
done
sql --db temporal update-schema -d /etc/temporal/schema/postgresql/v12/temporal/versioned
sql --db temporal_visibility update-schema -d /etc/temporal/schema/postgresql/v12/visibility/versioned
echo 'Temporal schemas are up to date'
