#!/usr/bin/env bash
# The official Temporal server on the local PostgreSQL, with its Web UI: what a production cluster
# runs, on one box. Selected by `TEMPORAL_SERVER=postgres npm run up` (scripts/infra.sh calls this
# instead of starting the dev server); also usable on its own.
#
#   tools   builds, from the Go module proxy, into .tools/bin (once; ~1 min with a warm Go cache):
#             temporal-server     go.temporal.io/server/cmd/server
#             temporal-sql-tool   go.temporal.io/server/cmd/tools/sql (the schemas are embedded in it:
#                                 the module's schema/postgresql/v12/{temporal,visibility})
#             temporal-ui-server  github.com/temporalio/ui-server/v2/cmd/server
#   up      tools, then: the role `temporal` and its databases `temporal` and `temporal_visibility`,
#           their schemas set up or brought up to date, the server (deploy/temporal/postgres.yaml),
#           the namespace `default` with the app's search attributes, and the Web UI
#           (deploy/temporal/ui/postgres.yaml). Idempotent: with everything up it changes nothing.
#   down    stops every server and UI this checkout started (their databases stay)
#   status  what listens where
#
# Ports. The frontend listens on the port of TEMPORAL_ADDRESS (what the app connects to; 7233 by
# default), the Web UI on the port of TEMPORAL_UI_URL (8233 by default), so one setting moves both
# the server and the app. TEMPORAL_PG_PORT / TEMPORAL_PG_UI_PORT override them. The server's other
# ports follow the frontend's F, as in Temporal's sample configs: history F+1, matching F+2,
# worker F+6, HTTP API F+10, metrics F+11 (/metrics; not 8000, the API's port), membership
# F-300, F-299, F-298, F-294. A dev server on the same port must be stopped first
# (`npm run infra -- down`). Example, next to a running dev server:
#   TEMPORAL_ADDRESS=127.0.0.1:7243 TEMPORAL_UI_URL=http://localhost:8243 scripts/temporal-postgres.sh up
#
# The database: TEMPORAL_PG_HOST (127.0.0.1), TEMPORAL_PG_DB_PORT (5432), TEMPORAL_PG_USER and
# TEMPORAL_PG_PASSWORD (temporal/temporal). On 127.0.0.1 the role and databases are created as the
# `postgres` superuser (as scripts/infra.sh creates the app's); elsewhere they must exist.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/.tools"
DATA="$ROOT/.data"
BIN="$TOOLS/bin"
mkdir -p "$BIN" "$DATA"

TEMPORAL_SERVER_VERSION=${TEMPORAL_SERVER_VERSION:-v1.29.1} # the release the dev server (CLI v1.5.1) bundles
TEMPORAL_UI_SERVER_VERSION=${TEMPORAL_UI_SERVER_VERSION:-v2.42.1}
# workflows/contract.ts SEARCH_ATTRIBUTES, as scripts/infra.sh registers them on the dev server.
SEARCH_ATTRIBUTES=(OrderId CustomerId OrderStatus FailureReason)
NAMESPACE_RETENTION=${TEMPORAL_PG_RETENTION:-72h}

log() { printf '[temporal-pg] %s\n' "$*"; }
die() { printf '[temporal-pg] ERROR: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@" || die "needs root (or passwordless sudo) for: $*"; fi; }
port_of() { # url-or-host:port default
  local p
  p=$(sed -nE 's#^([a-z]+://)?[^/]*:([0-9]+)(/.*)?$#\2#p' <<<"$1")
  echo "${p:-$2}"
}

# --- Ports ---------------------------------------------------------------------------------------
F=${TEMPORAL_PG_PORT:-$(port_of "${TEMPORAL_ADDRESS:-}" 7233)}
UI_PORT=${TEMPORAL_PG_UI_PORT:-$(port_of "${TEMPORAL_UI_URL:-}" 8233)}
export TEMPORAL_PG_PORT=$F TEMPORAL_PG_UI_PORT=$UI_PORT
export TEMPORAL_PG_HISTORY_PORT=$((F + 1)) TEMPORAL_PG_MATCHING_PORT=$((F + 2)) TEMPORAL_PG_WORKER_PORT=$((F + 6))
export TEMPORAL_PG_HTTP_PORT=$((F + 10)) TEMPORAL_PG_METRICS_PORT=$((F + 11))
export TEMPORAL_PG_FRONTEND_MEMBERSHIP_PORT=$((F - 300)) TEMPORAL_PG_HISTORY_MEMBERSHIP_PORT=$((F - 299))
export TEMPORAL_PG_MATCHING_MEMBERSHIP_PORT=$((F - 298)) TEMPORAL_PG_WORKER_MEMBERSHIP_PORT=$((F - 294))
export TEMPORAL_PG_DYNAMIC_CONFIG="$ROOT/deploy/temporal/dynamicconfig.yaml"
PG_HOST=${TEMPORAL_PG_HOST:-127.0.0.1} PG_PORT=${TEMPORAL_PG_DB_PORT:-5432}
PG_USER=${TEMPORAL_PG_USER:-temporal} PG_PASSWORD=${TEMPORAL_PG_PASSWORD:-temporal}
DB=${TEMPORAL_PG_DB:-temporal} VISIBILITY_DB=${TEMPORAL_PG_VISIBILITY_DB:-temporal_visibility}
SERVER_PID="$DATA/temporal-postgres-$F.pid" UI_PID="$DATA/temporal-ui-$UI_PORT.pid"
ADDRESS="127.0.0.1:$F"

# --- Tools ---------------------------------------------------------------------------------------
# `go install` names both binaries `server`; each is built into a scratch GOBIN and renamed.
go_build() { # module@version target
  command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || die "building $1 needs Go >= 1.21 on PATH"
  local scratch
  scratch=$(mktemp -d)
  log "building $1 from the Go module proxy (first time only, ~1 min with a warm Go cache)"
  GOBIN="$scratch" GOFLAGS=-trimpath go install -ldflags='-s -w' "$1" || { rm -rf "$scratch"; die "go install $1 failed"; }
  mv "$scratch/$(basename "${1%@*}")" "$BIN/$2"
  rm -rf "$scratch"
}

tools() {
  if [ "$(cat "$TOOLS/temporal-server.version" 2>/dev/null)" != "$TEMPORAL_SERVER_VERSION" ] ||
    [ ! -x "$BIN/temporal-server" ] || [ ! -x "$BIN/temporal-sql-tool" ]; then
    go_build "go.temporal.io/server/cmd/server@$TEMPORAL_SERVER_VERSION" temporal-server
    go_build "go.temporal.io/server/cmd/tools/sql@$TEMPORAL_SERVER_VERSION" temporal-sql-tool
    echo "$TEMPORAL_SERVER_VERSION" >"$TOOLS/temporal-server.version"
  fi
  if [ "$(cat "$TOOLS/temporal-ui-server.version" 2>/dev/null)" != "$TEMPORAL_UI_SERVER_VERSION" ] ||
    [ ! -x "$BIN/temporal-ui-server" ]; then
    go_build "github.com/temporalio/ui-server/v2/cmd/server@$TEMPORAL_UI_SERVER_VERSION" temporal-ui-server
    echo "$TEMPORAL_UI_SERVER_VERSION" >"$TOOLS/temporal-ui-server.version"
  fi
  # The operator commands below (namespace, search attributes) use the CLI scripts/infra.sh builds.
  [ -x "$BIN/temporal" ] || bash "$ROOT/scripts/infra.sh" tools
}

# --- Databases -----------------------------------------------------------------------------------
databases() {
  if [ "$PG_HOST" = 127.0.0.1 ] || [ "$PG_HOST" = localhost ]; then
    port_open "$PG_PORT" || die "PostgreSQL does not answer on $PG_HOST:$PG_PORT (npm run infra starts it)"
    pg_admin() { (cd / && as_root runuser -u postgres -- psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qtAX "$@"); }
    if [ "$(pg_admin -c "select 1 from pg_roles where rolname = '$PG_USER'")" != 1 ]; then
      log "PostgreSQL: creating role $PG_USER"
      pg_admin -c "create role $PG_USER login password '$PG_PASSWORD'"
    fi
    for db in "$DB" "$VISIBILITY_DB"; do
      if [ "$(pg_admin -c "select 1 from pg_database where datname = '$db'")" != 1 ]; then
        log "PostgreSQL: creating database $db"
        pg_admin -c "create database $db owner $PG_USER"
      fi
    done
  fi
  # setup-schema once (it records version 0.0), then update-schema applies only the versions the
  # database lacks: a newer TEMPORAL_SERVER_VERSION migrates the existing databases in place.
  local sql=("$BIN/temporal-sql-tool" --plugin postgres12 --ep "$PG_HOST" -p "$PG_PORT" -u "$PG_USER" --pw "$PG_PASSWORD")
  local schema
  for db in "$DB" "$VISIBILITY_DB"; do
    [ "$db" = "$DB" ] && schema=postgresql/v12/temporal || schema=postgresql/v12/visibility
    if ! PGPASSWORD="$PG_PASSWORD" psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$db" -qtAX \
      -c 'select 1 from schema_version limit 1' 2>/dev/null | grep -q 1; then
      log "PostgreSQL: setting up the schema of $db"
      "${sql[@]}" --db "$db" setup-schema -v 0.0 >>"$DATA/temporal-postgres-schema.log" 2>&1 ||
        die "setup-schema of $db failed (see $DATA/temporal-postgres-schema.log)"
    fi
    "${sql[@]}" --db "$db" update-schema --schema-name "$schema" >>"$DATA/temporal-postgres-schema.log" 2>&1 ||
      die "update-schema of $db failed (see $DATA/temporal-postgres-schema.log)"
  done
}

# --- Server, namespace, UI -----------------------------------------------------------------------
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() { # seconds what command...
  local i seconds=$1 what=$2
  shift 2
  for ((i = 0; i < seconds * 10; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what not ready within $seconds s (see $DATA/temporal-postgres.log)"
}
cli() { "$BIN/temporal" --address "$ADDRESS" "$@"; }

server_up() {
  if running "$SERVER_PID"; then return; fi
  for p in "$F" $((F + 1)) $((F + 2)) $((F + 6)) $((F + 10)) $((F + 11)); do
    port_open "$p" && die "port $p is taken (the dev server on $F? stop it with: npm run infra -- down; or choose another port with TEMPORAL_ADDRESS=127.0.0.1:<port>)"
  done
  log "server $TEMPORAL_SERVER_VERSION: starting on $ADDRESS (PostgreSQL $PG_HOST:$PG_PORT/$DB, log $DATA/temporal-postgres.log)"
  # setsid: the server outlives this script and the shell's Ctrl-C; `down` stops it. (Its own
  # command, so that $! is the server itself.)
  cd "$ROOT"
  TEMPORAL_PG_HOST=$PG_HOST TEMPORAL_PG_DB_PORT=$PG_PORT TEMPORAL_PG_USER=$PG_USER \
    TEMPORAL_PG_PASSWORD=$PG_PASSWORD TEMPORAL_PG_DB=$DB TEMPORAL_PG_VISIBILITY_DB=$VISIBILITY_DB \
    setsid nohup "$BIN/temporal-server" --root "$ROOT" --config deploy/temporal --env postgres \
    --allow-no-auth start >>"$DATA/temporal-postgres.log" 2>&1 </dev/null &
  echo $! >"$SERVER_PID"
  wait_for 90 "Temporal server on $ADDRESS" cli operator cluster health
}

namespace_up() {
  if ! cli operator namespace describe --namespace default >/dev/null 2>&1; then
    log "creating namespace default (retention $NAMESPACE_RETENTION)"
    cli operator namespace create --namespace default --retention "$NAMESPACE_RETENTION" >/dev/null
    # Usable once the frontend's namespace cache has it (refreshed every 2 s).
    wait_for 30 "namespace default" cli operator search-attribute list --namespace default
  fi
  # One at a time, listed again until all three show: right after a start or a registration, the
  # list (answered from the frontend's cached copy of the namespace, refreshed every 2 s) was seen
  # to miss one here (v1.29 on PostgreSQL). Registering one that exists is harmless ("already exists").
  local sa missing round
  for ((round = 0; round < 10; round++)); do
    missing=()
    for sa in "${SEARCH_ATTRIBUTES[@]}"; do
      cli operator search-attribute list --namespace default --output json | grep -q "\"$sa\"" || missing+=("$sa")
    done
    [ ${#missing[@]} -eq 0 ] && return
    log "registering search attribute ${missing[0]} (Keyword)"
    cli operator search-attribute create --namespace default --name "${missing[0]}" --type Keyword >/dev/null
    sleep 3
  done
  die "search attributes ${missing[*]} are not listed after 10 registrations (see $DATA/temporal-postgres.log)"
}

ui_up() {
  if running "$UI_PID"; then return; fi
  port_open "$UI_PORT" && die "port $UI_PORT is taken (the dev server's Web UI? stop it with: npm run infra -- down; or set TEMPORAL_UI_URL=http://localhost:<port>)"
  cd "$ROOT"
  setsid nohup "$BIN/temporal-ui-server" --root "$ROOT" --config deploy/temporal/ui --env postgres start \
    >>"$DATA/temporal-ui.log" 2>&1 </dev/null &
  echo $! >"$UI_PID"
  wait_for 30 "Web UI on port $UI_PORT" port_open "$UI_PORT"
}

up() {
  if [ -n "${TEMPORAL_ADDRESS:-}" ] && ! [[ "$TEMPORAL_ADDRESS" =~ ^(127\.0\.0\.1|localhost): ]]; then
    die "TEMPORAL_ADDRESS=$TEMPORAL_ADDRESS is not on this machine: unset it (or point it at 127.0.0.1:<port>) to run Temporal on the local PostgreSQL"
  fi
  tools
  databases
  server_up
  namespace_up
  ui_up
  log "Temporal (on PostgreSQL) up on $ADDRESS, Web UI on http://localhost:$UI_PORT, metrics on http://127.0.0.1:$TEMPORAL_PG_METRICS_PORT/metrics"
}

stop() { # pidfile what
  local pid i
  pid=$(cat "$1" 2>/dev/null) || return 0
  if kill "$pid" 2>/dev/null; then
    # The server drains its shards on SIGTERM; give it the time to, so the next start is clean.
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    log "$2 stopped"
  fi
  rm -f "$1"
}

down() {
  local f
  for f in "$DATA"/temporal-ui-*.pid; do [ -e "$f" ] && stop "$f" "Web UI"; done
  for f in "$DATA"/temporal-postgres-*.pid; do [ -e "$f" ] && stop "$f" "Temporal server on PostgreSQL"; done
  return 0
}

status() {
  local p
  for p in "$F:frontend" "$TEMPORAL_PG_METRICS_PORT:metrics" "$UI_PORT:Web-UI"; do
    port_open "${p%%:*}" && log "${p#*:}: listening on ${p%%:*}" || log "${p#*:}: not listening on ${p%%:*}"
  done
}

case "${1:-up}" in
  up) up ;;
  tools) tools ;;
  down) down ;;
  status) status ;;
  *) die "usage: scripts/temporal-postgres.sh [up|tools|down|status]" ;;
esac
