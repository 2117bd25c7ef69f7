#!/usr/bin/env bash
# The main command (`npm run up`): from a fresh clone to the running system.
# Installs dependencies, brings up local PostgreSQL/RabbitMQ/Temporal (unless configured to use
# existing ones), applies migrations and the seed catalogue, then runs every app process with its
# output prefixed by its name. Ctrl-C / SIGTERM stops these processes; the servers keep running
# (`npm run infra -- down` stops them). `TRACING=on npm run up` adds traces (lib/tracing.ts) and
# starts the Zipkin viewer for them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/infra.sh up
npx tsx db/cli.ts seed
# The local key pair the API verifies tokens with (idempotent; skipped when AUTH_JWKS_URL is set),
# and a token of each kind, ready to paste.
if [ -z "${AUTH_JWKS_URL:-}" ]; then
  customer_token=$(npx tsx cli/token.ts C100)
  operator_token=$(npx tsx cli/token.ts --operator)
  echo "[up] tokens (24 h; more with npm run -s token -- <customer-id> | --operator):"
  echo "[up]   export TOKEN=$customer_token          # customer C100"
  echo "[up]   export OPS_TOKEN=$operator_token      # operator"
else
  echo "[up] authentication: tokens from ${AUTH_JWKS_URL} (issuer ${AUTH_ISSUER:-acme-orders-local})"
fi
[ "${PROMETHEUS:-on}" = off ] && prometheus= || prometheus="  ·  Prometheus http://localhost:9090"
traces=
if [ "${TRACING:-off}" = on ]; then
  [ -n "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ] && traces="  ·  traces to $OTEL_EXPORTER_OTLP_ENDPOINT" || traces="  ·  Zipkin http://localhost:9411/zipkin/"
fi
echo "[up] API http://localhost:${PORT:-8000}  ·  Temporal Web UI ${TEMPORAL_UI_URL:-http://localhost:8233}$prometheus$traces  ·  Ctrl-C to stop"
exec npx concurrently --names api,outbox,bridge,worker,loyalty,analytics --prefix-colors blue,magenta,yellow,green,cyan,gray \
  --kill-others-on-fail --kill-signal SIGTERM \
  "node --import tsx api/main.ts" "node --import tsx workers/outbox-main.ts" \
  "node --import tsx workers/bridge-main.ts" \
  "node --import tsx workers/temporal-worker-main.ts" "node --import tsx subscribers/loyalty/main.ts" \
  "node --import tsx subscribers/analytics/main.ts"
