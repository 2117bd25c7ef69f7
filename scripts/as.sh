#!/usr/bin/env bash
# Runs a command as one service of the local setup: `scripts/as.sh outbox node …` loads
# .data/access/outbox.env (its own PostgreSQL and RabbitMQ logins, written by
# scripts/provision-access.sh). A variable already set in the environment wins (pointing at your own
# servers), and without that file the command runs with the defaults.
set -euo pipefail
service=$1
shift
file="$(cd "$(dirname "$0")/.." && pwd)/.data/access/$service.env"
if [ -f "$file" ]; then
  while IFS='=' read -r key value; do
    [ -n "$key" ] && [ -z "${!key:-}" ] && export "$key=$value"
  done <"$file"
fi
exec "$@"
