#!/usr/bin/env bash
# Least privilege on the local servers, the way a deployment sets it up (README, Least privilege):
#   PostgreSQL  acme       owns the schema and runs the migrations (and creates the tests' databases)
#               acme_app   what every app process logs in as: reads and writes rows, changes no schema
#                          (its table rights are granted by each migration run: db/access.ts)
#   RabbitMQ    one user per service, each with only the permissions its setup and work need; only
#               acme-outbox may publish to the events exchange (and acme-operator, re-driving, to the
#               queues through the default exchange); acme-admin is the management UI's login
# Passwords are generated once, mode 600, outside the checkout: the local servers are this machine's,
# shared by every checkout on it (a worktree, a fresh clone for CI), so each checkout reuses the same
# passwords instead of changing them under another one's running processes. They live in
# $ACME_SECRETS_DIR (default ~/.local/state/acme-orders). Each service's connection URLs go to the
# checkout's .data/access/<service>.env (git-ignored), which scripts/as.sh loads before starting it.
# Idempotent. A server given by DATABASE_URL / AMQP_URL is left alone (its operators provision it).
set -euo pipefail
umask 077 # passwords and the files that hold them: this user only
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ACCESS="$ROOT/.data/access"
mkdir -p "$ACCESS" && chmod 700 "$ACCESS"
SECRETS=${ACME_SECRETS_DIR:-${XDG_STATE_HOME:-${HOME:?}/.local/state}/acme-orders}
mkdir -p "$SECRETS" && chmod 700 "$SECRETS"
EXCHANGE=${AMQP_EXCHANGE:-acme.events}
BRIDGE=${BRIDGE_QUEUE:-orders.bridge} LOYALTY=${LOYALTY_QUEUE:-loyalty.points} ANALYTICS=${ANALYTICS_QUEUE:-analytics.orders}
SERVICES=(api outbox bridge worker loyalty analytics operator)

log() { printf '[access] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
secret() { # name: its password, made once per machine (and user)
  local file="$SECRETS/$1.secret" legacy="$ACCESS/.$1.secret" fresh
  [ -s "$file" ] || rm -f "$file" # an empty one (a disk that was full) would be an empty password
  if [ ! -s "$file" ]; then
    # A checkout provisioned before the passwords moved out of it keeps its own; else a new one.
    fresh=$(mktemp "$SECRETS/.new.XXXXXX")
    if [ -s "$legacy" ]; then cat "$legacy" >"$fresh"; else head -c 24 /dev/urandom | base64 | tr -d '+/=' | head -c 24 >"$fresh"; fi
    mv -n "$fresh" "$file" # a checkout provisioning at the same moment may have been first: its stands
    rm -f "$fresh"
  fi
  cat "$file"
}
rx() { printf '%s' "$1" | sed 's/[.]/\\./g'; } # a name as a regex

# --- PostgreSQL ----------------------------------------------------------------------------------
if [ -z "${DATABASE_URL:-}" ]; then
  pg_admin() { (cd / && as_root runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtAX "$@"); }
  app_password=$(secret pg-acme_app)
  if [ "$(pg_admin -c "select 1 from pg_roles where rolname = 'acme_app'")" != 1 ]; then
    log "PostgreSQL: creating role acme_app (rows only)"
    pg_admin -c "create role acme_app login"
  fi
  pg_admin -c "alter role acme_app login nocreatedb nocreaterole password '$app_password'"
  # The schema stays the owner's: nobody else may create in it (PostgreSQL 15's default, made sure).
  pg_admin -d acme -c "revoke create on schema public from public"
  for svc in "${SERVICES[@]}"; do
    echo "DATABASE_URL=postgres://acme_app:$app_password@127.0.0.1:5432/acme" >"$ACCESS/$svc.env.pg"
  done
  log "PostgreSQL: acme owns the schema (migrations), acme_app reads and writes rows"
fi

# --- RabbitMQ ------------------------------------------------------------------------------------
if [ -z "${AMQP_URL:-}" ]; then
  ctl() { as_root rabbitmqctl -q "$@"; }
  ex=$(rx "$EXCHANGE") dlx=$(rx "$EXCHANGE.dlx")
  own() { local q; q=$(rx "$1"); printf '%s' "$q|$q\\.dlq"; } # a consumer's queue and its DLQ
  # user  configure  write  read   (regexes; publishing needs write on the exchange, binding a queue
  # needs write on the queue and read on the exchange, declaring needs configure)
  declare -A CONF WRITE READ
  CONF[api]='^$' WRITE[api]='^$' READ[api]='^$'
  CONF[worker]='^$' WRITE[worker]='^$' READ[worker]='^$'
  # The outbox declares every consumer group's queue (lib/amqp/topology.ts consumerQueueSpecs) before
  # it publishes, so no event is lost before its subscriber ever ran (an order.placed before the
  # bridge, a payment.completed or .refunded before loyalty). On a broker that does not have it yet, a
  # queue naming a dead-letter exchange is only created for a user that may read the queue and write
  # to that exchange. Read on the queues only: not on their DLQs.
  consumers="$(own "$BRIDGE")|$(own "$LOYALTY")|$(own "$ANALYTICS")"
  CONF[outbox]="^($ex|$dlx|$consumers)\$" WRITE[outbox]="^($ex|$dlx|$consumers)\$"
  READ[outbox]="^($ex|$dlx|$(rx "$BRIDGE")|$(rx "$LOYALTY")|$(rx "$ANALYTICS"))\$"
  for pair in bridge:"$BRIDGE" loyalty:"$LOYALTY" analytics:"$ANALYTICS"; do
    svc=${pair%%:*} queue=${pair#*:}
    CONF[$svc]="^($ex|$dlx|$(own "$queue"))\$"
    WRITE[$svc]="^($dlx|$(own "$queue"))\$" # its dead letters, to the DLX only: never the events exchange
    READ[$svc]="^($ex|$dlx|$(own "$queue"))\$"
  done
  CONF[operator]='^$' WRITE[operator]='^amq\.default$' READ[operator]="^($consumers)\$"
  existing=$(ctl list_users --no-table-headers 2>/dev/null | awk '{print $1}')
  for svc in "${SERVICES[@]}" admin; do
    user="acme-$svc" password=$(secret "mq-$user")
    grep -qx "$user" <<<"$existing" || { log "RabbitMQ: creating user $user"; ctl add_user "$user" "$password" >/dev/null; }
    ctl change_password "$user" "$password" >/dev/null
    if [ "$svc" = admin ]; then
      ctl set_user_tags "$user" administrator >/dev/null
      ctl set_permissions -p / "$user" '.*' '.*' '.*' >/dev/null
      continue
    fi
    ctl set_user_tags "$user" >/dev/null
    ctl set_permissions -p / "$user" "${CONF[$svc]}" "${WRITE[$svc]}" "${READ[$svc]}" >/dev/null
    echo "AMQP_URL=amqp://$user:$password@127.0.0.1:5672" >"$ACCESS/$svc.env.mq"
  done
  log "RabbitMQ: one user per service; management UI login acme-admin (password: $SECRETS/mq-acme-admin.secret)"
fi

for svc in "${SERVICES[@]}"; do
  (umask 077 && cat "$ACCESS/$svc.env.pg" "$ACCESS/$svc.env.mq" 2>/dev/null >"$ACCESS/$svc.env" || true)
done
