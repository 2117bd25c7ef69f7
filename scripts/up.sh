#!/usr/bin/env bash
# The main command (`npm run up`): from a fresh clone to the running system.
# Installs dependencies, brings up local PostgreSQL/RabbitMQ/Temporal (unless configured to use
# existing ones), applies migrations and the seed catalogue, then runs every app process with its
# output prefixed by its name. Ctrl-C / SIGTERM stops these processes; the servers keep running
# (`npm run infra -- down` stops them). `TRACING=on npm run up` adds traces (lib/tracing.ts) and
# starts the Zipkin viewer for them.
#
# Many instances of a process: `npm run up -- --scale worker=2,bridge=2,outbox=2` (or SCALE=…).
# Instance n (from 1) of a process runs on its own ports: the API on PORT+n-1 (8000, 8001, …; Node
# cannot share one listening port between processes without a cluster module), the probe and
# metrics servers on their port + 100·(n-1) (outbox 9101, 9201, …; the worker's SDK metrics 9105,
# 9205, …). Prometheus finds the further instances in .data/prometheus-targets/, written here.
set -euo pipefail
cd "$(dirname "$0")/.."

# The processes, in this order (bench/lib/stack.ts reads these two lists to start the same ones).
NAMES=api,outbox,bridge,worker,loyalty,analytics
# Compiled by `npm run build` (below): plain node, no TypeScript loader in the processes. The worker's
# V8 heaps (its main thread's and its workflow thread's) are capped at 96 MB of old generation each:
# uncapped, they grew through a long drain (281 → 301 MB RSS over 3000 orders), capped they stay flat
# at no measured CPU cost. And glibc gives it 2 malloc arenas instead of one per thread of the SDK's
# Rust core: 224-237 MB RSS instead of 253-271 at saturation, for 5-14 % more worker CPU (README
# "Memory"). The same command is in npm run start:worker, Docker Compose and the manifest (their
# tests hold all four equal).
COMMANDS=("node dist/api/main.js" "node dist/workers/outbox-main.js"
  "node dist/workers/bridge-main.js" "env MALLOC_ARENA_MAX=2 node --max-old-space-size=96 dist/workers/temporal-worker-main.js"
  "node dist/subscribers/loyalty/main.js" "node dist/subscribers/analytics/main.js")
COLORS=(blue magenta yellow green cyan gray)
# Each process's own ports (lib/config.ts), with their defaults, and its Prometheus jobs.
declare -A PORTS=([api]="PORT=8000" [outbox]="OUTBOX_HTTP_PORT=9101" [bridge]="BRIDGE_HTTP_PORT=9102"
  [worker]="WORKER_HTTP_PORT=9103 WORKER_SDK_METRICS_PORT=9105" [loyalty]="LOYALTY_HTTP_PORT=9104"
  [analytics]="ANALYTICS_HTTP_PORT=9106")
declare -A JOB=([PORT]=api [OUTBOX_HTTP_PORT]=outbox [BRIDGE_HTTP_PORT]=bridge [WORKER_HTTP_PORT]=worker
  [WORKER_SDK_METRICS_PORT]=worker-sdk [LOYALTY_HTTP_PORT]=loyalty [ANALYTICS_HTTP_PORT]=analytics)
MAX_INSTANCES=10

die() { printf '[up] ERROR: %s\n' "$*" >&2; exit 2; }

scale=${SCALE:-} dry_run=
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) [ $# -ge 2 ] || die "--scale needs a value, e.g. --scale worker=2,bridge=2"; scale=$2; shift 2 ;;
    --scale=*) scale=${1#--scale=}; shift ;;
    --dry-run) dry_run=1; shift ;; # print the processes and their ports, start nothing
    *) die "unknown argument $1 (usage: npm run up [-- --scale worker=2,bridge=2,outbox=2])" ;;
  esac
done
declare -A COUNT=()
IFS=, read -ra names <<<"$NAMES"
for name in "${names[@]}"; do COUNT[$name]=1; done
if [ -n "$scale" ]; then
  IFS=, read -ra pairs <<<"$scale"
  for pair in "${pairs[@]}"; do
    name=${pair%%=*} n=${pair#*=}
    [ -n "${COUNT[$name]:-}" ] || die "--scale: no process named '$name' (the processes: $NAMES)"
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le $MAX_INSTANCES ] ||
      die "--scale $name=$n: give a number of instances from 1 to $MAX_INSTANCES"
    COUNT[$name]=$n
  done
fi

# One command per instance; instance n > 1 gets its own ports through the environment.
run_names=() run_colors=() run_commands=()
declare -A EXTRA_TARGETS=()
for i in "${!names[@]}"; do
  name=${names[$i]}
  for ((n = 1; n <= COUNT[$name]; n++)); do
    env_prefix=""
    for setting in ${PORTS[$name]}; do
      key=${setting%%=*} base=${!key:-${setting#*=}}
      port=$base
      if [ "$base" != 0 ]; then
        [ "$key" = PORT ] && port=$((base + n - 1)) || port=$((base + 100 * (n - 1)))
        [ "$n" -gt 1 ] && EXTRA_TARGETS[${JOB[$key]}]+="\"127.0.0.1:$port\","
      fi
      [ "$n" -gt 1 ] && env_prefix+="$key=$port "
    done
    [ "$n" -gt 1 ] && run_names+=("$name$n") || run_names+=("$name")
    run_colors+=("${COLORS[$i]}")
    # As its own service's PostgreSQL and RabbitMQ user (scripts/as.sh, .data/access/<name>.env).
    run_commands+=("${env_prefix:+env $env_prefix}bash scripts/as.sh $name ${COMMANDS[$i]}")
  done
done

if [ -n "$dry_run" ]; then
  for i in "${!run_names[@]}"; do echo "${run_names[$i]}: ${run_commands[$i]}"; done
  for job in "${!EXTRA_TARGETS[@]}"; do echo "prometheus $job: ${EXTRA_TARGETS[$job]%,}"; done
  exit 0
fi

bash scripts/deps.sh
node scripts/build.mjs # dist/ from the current sources (well under a second)
bash scripts/infra.sh up
npx tsx db/cli.ts seed # as the schema's owner (acme); each process below as its own user (scripts/as.sh)
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

# Prometheus (deploy/prometheus/prometheus.yml) scrapes each process's first instance on its static
# target and the further ones from these files, which it re-reads when they change.
targets=.data/prometheus-targets
for job in "${JOB[@]}"; do
  mkdir -p "$targets/$job"
  list=${EXTRA_TARGETS[$job]:-}
  if [ -n "$list" ]; then
    printf '[{"targets":[%s],"labels":{"scaled":"true"}}]\n' "${list%,}" >"$targets/$job/instances.json.tmp"
  else
    echo '[]' >"$targets/$job/instances.json.tmp"
  fi
  mv "$targets/$job/instances.json.tmp" "$targets/$job/instances.json" # atomic: Prometheus never reads half a file
done

[ "${PROMETHEUS:-on}" = off ] && prometheus= || prometheus="  ·  Prometheus http://localhost:9090"
instances=
for name in "${names[@]}"; do [ "${COUNT[$name]}" -gt 1 ] && instances+=" $name×${COUNT[$name]}"; done
traces=
if [ "${TRACING:-off}" = on ]; then
  [ -n "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ] && traces="  ·  traces to $OTEL_EXPORTER_OTLP_ENDPOINT" || traces="  ·  Zipkin http://localhost:9411/zipkin/"
fi
echo "[up] API http://localhost:${PORT:-8000}  ·  Temporal Web UI ${TEMPORAL_UI_URL:-http://localhost:8233}$prometheus$traces  ·  Ctrl-C to stop"
[ -z "$instances" ] || echo "[up] instances:$instances (API on ports ${PORT:-8000}…$((${PORT:-8000} + COUNT[api] - 1)))"
exec npx concurrently --names "$(IFS=,; echo "${run_names[*]}")" --prefix-colors "$(IFS=,; echo "${run_colors[*]}")" \
  --kill-others-on-fail --kill-signal SIGTERM "${run_commands[@]}"
