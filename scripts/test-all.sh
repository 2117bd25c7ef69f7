#!/usr/bin/env bash
# The test command (`npm run test:all`): from a fresh clone, installs what is missing, brings up the
# local servers, then runs typecheck, lint and every test project (unit, workflow on the
# time-skipping server, integration against real PostgreSQL, RabbitMQ and Temporal).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/infra.sh up
bash scripts/infra.sh tools
bash scripts/k8s-tools.sh # kustomize, kubernetes-validate and the CRDs for test/unit/k8s.test.ts
echo "[test] typecheck"; npx tsc --noEmit
echo "[test] lint"; npx eslint .
echo "[test] format"; npx prettier --check . >/dev/null || { npx prettier --check .; exit 1; }
mkdir -p .data
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json=.data/vitest-report.json "$@" || status=$?
# One plain closing line that any CI reads: "N passed, N failed".
node -e '
  const r = JSON.parse(require("fs").readFileSync(".data/vitest-report.json", "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));
' || true
exit $status
