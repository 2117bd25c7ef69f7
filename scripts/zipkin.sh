#!/usr/bin/env bash
# Zipkin, the trace viewer that runs here (UI on http://localhost:9411/zipkin/): Maven Central's
# io.zipkin:zipkin-server exec jar, run with its in-memory storage (traces are for looking at now;
# the last ZIPKIN_MAX_SPANS spans are kept, nothing survives a restart). scripts/infra.sh calls
# `up` when TRACING=on and no OTLP collector is configured, and `down` with the other servers.
# Usage: scripts/zipkin.sh [up|down|status]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/.tools"
DATA="$ROOT/.data"
ZIPKIN_VERSION=${ZIPKIN_VERSION:-3.5.1}
ZIPKIN_PORT=9411
JAR="$TOOLS/zipkin/zipkin-server-$ZIPKIN_VERSION-exec.jar"

log() { printf '[zipkin] %s\n' "$*"; }
die() { printf '[zipkin] ERROR: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@" || die "needs root (or passwordless sudo) for: $*"; fi; }

install() {
  [ -f "$JAR" ] && return
  command -v java >/dev/null || { as_root apt-get update -qq; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null; }
  command -v mvn >/dev/null || { as_root apt-get update -qq; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null; }
  log "Zipkin $ZIPKIN_VERSION: fetching the server from Maven Central (first time only)"
  mkdir -p "$TOOLS/zipkin"
  mvn -q -B dependency:copy -Dartifact="io.zipkin:zipkin-server:$ZIPKIN_VERSION:jar:exec" \
    -DoutputDirectory="$TOOLS/zipkin" -Dmdep.overWriteReleases=true
}

up() {
  install
  if port_open "$ZIPKIN_PORT"; then
    log "up on http://localhost:$ZIPKIN_PORT/zipkin/"
    return
  fi
  log "starting (in-memory storage)"
  mkdir -p "$DATA"
  # On loopback like every other local server (its own default is every interface); a small heap:
  # it holds recent spans only.
  STORAGE_TYPE=mem MEM_MAX_SPANS=${ZIPKIN_MAX_SPANS:-200000} setsid nohup java -Xmx512m -jar "$JAR" \
    "--armeria.ports[0].ip=127.0.0.1" "--armeria.ports[0].port=$ZIPKIN_PORT" "--armeria.ports[0].protocols=http" \
    >>"$DATA/zipkin.log" 2>&1 </dev/null &
  echo $! >"$DATA/zipkin.pid"
  local i
  for ((i = 0; i < 600; i++)); do port_open "$ZIPKIN_PORT" && break; sleep 0.1; done
  port_open "$ZIPKIN_PORT" || die "did not listen on port $ZIPKIN_PORT within 60 s (see $DATA/zipkin.log)"
  log "up on http://localhost:$ZIPKIN_PORT/zipkin/"
}

down() {
  if [ -f "$DATA/zipkin.pid" ] && kill "$(cat "$DATA/zipkin.pid")" 2>/dev/null; then log "stopped"; fi
  rm -f "$DATA/zipkin.pid"
}

case "${1:-up}" in
  up) up ;;
  install) install ;;
  down) down ;;
  status) port_open "$ZIPKIN_PORT" && log "listening on $ZIPKIN_PORT" || log "not listening on $ZIPKIN_PORT" ;;
  *) die "usage: scripts/zipkin.sh [up|install|down|status]" ;;
esac
