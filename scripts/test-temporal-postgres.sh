#!/usr/bin/env bash
# `npm run test:temporal-postgres`: the integration suite against the official Temporal server on
# PostgreSQL (scripts/temporal-postgres.sh) instead of the dev server. Too slow for every CI run; run
# it before changing the Temporal server's version or configuration, and record the result in the
# README ("Temporal on PostgreSQL").
#
# By default the server runs next to the dev server, on 127.0.0.1:7243 with its Web UI on 8243, so a
# running `npm run up` is left alone; TEMPORAL_ADDRESS=127.0.0.1:7233 uses the one that
# `TEMPORAL_SERVER=postgres npm run up` started. The server keeps running afterwards
# (`npm run infra -- down` stops it). Extra arguments go to vitest (e.g. a test file).
set -euo pipefail
cd "$(dirname "$0")/.."
export TEMPORAL_ADDRESS=${TEMPORAL_ADDRESS:-127.0.0.1:7243}
export TEMPORAL_UI_URL=${TEMPORAL_UI_URL:-http://localhost:$((${TEMPORAL_ADDRESS##*:} + 1000))}
bash scripts/temporal-postgres.sh up
mkdir -p .data
report=.data/vitest-temporal-postgres.json
started=$(date +%s)
status=0
npx vitest run --project integration --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`[test:temporal-postgres] against ${process.env.TEMPORAL_ADDRESS}: ${r.numPassedTests} passed, ${r.numFailedTests} failed` +
    (r.numPendingTests ? `, ${r.numPendingTests} skipped` : "") + ` in ${process.argv[2]} s`);
' "$report" "$(($(date +%s) - started))" || true
exit $status
