#!/usr/bin/env bash
# Installs node_modules exactly as locked, only when the lockfile changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cmp -s package-lock.json node_modules/.acme-installed-lock 2>/dev/null; then
  echo "[deps] npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.acme-installed-lock
fi
