#!/usr/bin/env bash
# Dev mode: the whole stack on this machine, in the background.
#
#   scripts/dev.sh up              install what is missing, start RabbitMQ, FerretDB, the
#                                  outbox sink, the dev DNS server and the four services; write
#                                  their settings to var/dev.env (which `hato` reads); print
#                                  where to send mail
#   scripts/dev.sh dispatcher IP   one more dispatcher, owning source IP IP (127.0.0.x here),
#                                  with the dev settings; `down` stops it too
#   scripts/dev.sh down            stop all of it
#   scripts/dev.sh status          what runs
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUN="$ROOT/var/run"; LOGS="$ROOT/var/log"
mkdir -p "$RUN" "$LOGS" "$ROOT/var/outbox"

FERRET_ADDR="${HATO_FERRETDB_ADDR:-127.0.0.1:27017}"
export HATO_MONGODB_URL="${HATO_MONGODB_URL:-mongodb://$FERRET_ADDR/}"
export HATO_MONGODB_DATABASE="${HATO_MONGODB_DATABASE:-hato}"
export HATO_AMQP_URL="${HATO_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
export HATO_MASTER_KEY_FILE="${HATO_MASTER_KEY_FILE:-$ROOT/var/master.key}"
export HATO_VERP_KEY_FILE="${HATO_VERP_KEY_FILE:-$ROOT/var/verp.key}"
export HATO_UNSUBSCRIBE_KEY_FILE="${HATO_UNSUBSCRIBE_KEY_FILE:-$ROOT/var/unsubscribe.key}"
export HATO_INGEST_ADMIN_TOKEN_FILE="${HATO_INGEST_ADMIN_TOKEN_FILE:-$ROOT/var/admin.token}"
export HATO_INGEST_SMTP_PORT="${HATO_INGEST_SMTP_PORT:-2525}"
export HATO_INGEST_HTTP_PORT="${HATO_INGEST_HTTP_PORT:-8025}"
# Where one-click unsubscribe links point (in production: the https:// address of the door).
export HATO_PUBLIC_URL="${HATO_PUBLIC_URL:-http://127.0.0.1:$HATO_INGEST_HTTP_PORT}"
export HATO_INGEST_SUBMISSION_PORT="${HATO_INGEST_SUBMISSION_PORT:-2587}"
export HATO_INGEST_SMTPS_PORT="${HATO_INGEST_SMTPS_PORT:-2465}"
export HATO_INGEST_TLS_CERT_FILE="${HATO_INGEST_TLS_CERT_FILE:-$ROOT/var/tls/cert.pem}"
export HATO_INGEST_TLS_KEY_FILE="${HATO_INGEST_TLS_KEY_FILE:-$ROOT/var/tls/key.pem}"
export HATO_INGEST_OPS_PORT="${HATO_INGEST_OPS_PORT:-9101}"
export HATO_SIGNER_OPS_PORT="${HATO_SIGNER_OPS_PORT:-9102}"
export HATO_DISPATCHER_OPS_PORT="${HATO_DISPATCHER_OPS_PORT:-9103}"
export HATO_BOUNCE_OPS_PORT="${HATO_BOUNCE_OPS_PORT:-9104}"
export HATO_BOUNCE_SMTP_PORT="${HATO_BOUNCE_SMTP_PORT:-2527}"
export HATO_BOUNCE_FBL_ADDRESS="${HATO_BOUNCE_FBL_ADDRESS:-fbl@bounces.hato.localhost}"
SINK_PORT="${HATO_DEV_SINK_PORT:-2526}"
export HATO_DISPATCHER_ROUTES="${HATO_DISPATCHER_ROUTES:-*=127.0.0.1:$SINK_PORT}"
# The dev DNS server: domain verification and DKIM checks ask it, `hato dev dns` publishes.
export HATO_DEV_DNS_PORT="${HATO_DEV_DNS_PORT:-5300}"
export HATO_DEV_DNS_ZONE="${HATO_DEV_DNS_ZONE:-$ROOT/var/dns/zone.json}"
export HATO_DNS_NAMESERVERS="${HATO_DNS_NAMESERVERS:-127.0.0.1:$HATO_DEV_DNS_PORT}"
# Everything of the dev stack is on loopback, webhook receivers and MX hosts included.
export HATO_EGRESS_ALLOW="${HATO_EGRESS_ALLOW:-127.0.0.0/8}"
SERVICES=(ingest signer dispatcher bounce)

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

start() { # name command...
  local name="$1"; shift
  if running "$name"; then echo "dev: $name already running"; return; fi
  nohup "$@" >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

stop() { # name
  running "$1" || { rm -f "$RUN/$1.pid"; return 0; }
  local pid; pid="$(cat "$RUN/$1.pid")"
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN/$1.pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_ready() { # name port
  for _ in $(seq 300); do
    .venv/bin/python - "$2" <<'PY' 2>/dev/null && return 0
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=1)
PY
    running "$1" || { echo "dev: $1 exited; see var/log/$1.log" >&2; tail -5 "$LOGS/$1.log" >&2; return 1; }
    sleep 0.2
  done
  echo "dev: $1 not ready after 60 s; see var/log/$1.log" >&2; return 1
}

write_env() { # the settings the stack runs with, for `hato` and for extra processes
  local tmp="$ROOT/var/dev.env.tmp" name value
  {
    echo "# Written by \`make up\` (scripts/dev.sh): the dev stack's settings. \`hato\` reads this"
    echo "# file for whatever the environment does not set; \`set -a; . var/dev.env\` loads it."
    for name in $(compgen -e | grep '^HATO_' | grep -v '^HATO_ENV_FILE$' | sort); do
      value="${!name}"
      printf "%s='%s'\n" "$name" "${value//\'/\'\\\'\'}"
    done
  } >"$tmp"
  mv "$tmp" "$ROOT/var/dev.env"
}

extra_dispatcher() { # ip
  local ip="$1" port=9105 name
  [[ "$ip" =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
    echo "dev: a dev dispatcher sends from a loopback address (127.0.0.2, 127.0.0.3 ...)," \
      "not $ip: other addresses are not this machine's" >&2; exit 2; }
  name="dispatcher-$ip"
  running ingest || { echo "dev: the dev stack is not running (make up)" >&2; exit 1; }
  if running "$name"; then echo "dev: $name already running"; return; fi
  while port_open "$port"; do port=$((port + 1)); done
  # It serves the pools that name its IP as a member, and no pool by configuration.
  HATO_DISPATCHER_SOURCE_IPS="$ip" HATO_DISPATCHER_POOLS="" HATO_DISPATCHER_OPS_PORT="$port" \
    HATO_DISPATCHER_INSTANCE="dev-$ip" start "$name" .venv/bin/python -m services.dispatcher
  wait_ready "$name" "$port"
  echo "dev: a dispatcher owning $ip runs (ops port $port, log var/log/$name.log); make down stops it"
}

case "${1:-up}" in
  up)
    scripts/bootstrap.sh
    scripts/infra.sh up
    .venv/bin/hato dev master-key "$HATO_MASTER_KEY_FILE" >/dev/null
    .venv/bin/hato dev cert "$HATO_INGEST_TLS_CERT_FILE" "$HATO_INGEST_TLS_KEY_FILE" >/dev/null
    for secret in "$HATO_INGEST_ADMIN_TOKEN_FILE" "$HATO_VERP_KEY_FILE" \
      "$HATO_UNSUBSCRIBE_KEY_FILE"; do
      [ -s "$secret" ] || (umask 077 && .venv/bin/python -c \
        'import secrets; print(secrets.token_urlsafe(32))' >"$secret")
    done
    write_env
    start dns .venv/bin/hato dev dns serve
    .venv/bin/hato dev init
    start sink .venv/bin/hato dev sink --dir "$ROOT/var/outbox" --port "$SINK_PORT"
    for s in "${SERVICES[@]}"; do start "$s" .venv/bin/python -m "services.$s"; done
    wait_ready ingest "$HATO_INGEST_OPS_PORT"; wait_ready signer "$HATO_SIGNER_OPS_PORT"
    wait_ready dispatcher "$HATO_DISPATCHER_OPS_PORT"; wait_ready bounce "$HATO_BOUNCE_OPS_PORT"
    cat <<TXT

Hato is up. Put its command and Python on your PATH in this shell first:

  source .venv/bin/activate

  SMTP (relays for 127.0.0.1, no AUTH)  127.0.0.1:$HATO_INGEST_SMTP_PORT   sender domain: hato.test
  submission (STARTTLS + AUTH)          127.0.0.1:$HATO_INGEST_SUBMISSION_PORT, implicit TLS 127.0.0.1:$HATO_INGEST_SMTPS_PORT
                                        (self-signed var/tls/cert.pem; a user: hato credential add dev NAME)
  API key for the HTTP API              hato apikey add dev
  HTTP API (operator token in var/admin.token)  http://127.0.0.1:$HATO_INGEST_HTTP_PORT  (OpenAPI at /docs)
  delivered mail lands in               var/outbox/*.eml  (sink on 127.0.0.1:$SINK_PORT)
  a message's state                     hato message show <id from the 250 reply>
  bounces and complaints (VERP, FBL)    127.0.0.1:$HATO_BOUNCE_SMTP_PORT   (classify by hand: hato bounce classify FILE)
  DNS for domain checks                 127.0.0.1:$HATO_DEV_DNS_PORT   (publish records: hato dev dns publish DOMAIN)
  ops (/healthz /readyz /metrics)       ingest :$HATO_INGEST_OPS_PORT  signer :$HATO_SIGNER_OPS_PORT  dispatcher :$HATO_DISPATCHER_OPS_PORT  bounce :$HATO_BOUNCE_OPS_PORT
  logs                                  var/log/<service>.log;  settings in var/dev.env
Stop it with: make down
TXT
    ;;
  dispatcher)
    [ -n "${2:-}" ] || { echo "usage: $0 dispatcher IP" >&2; exit 2; }
    extra_dispatcher "$2"
    ;;
  down)
    for pidfile in "$RUN"/dispatcher-*.pid; do
      [ -e "$pidfile" ] && stop "$(basename "$pidfile" .pid)"
    done
    for s in "${SERVICES[@]}" sink dns; do stop "$s"; done
    scripts/infra.sh down
    ;;
  status)
    for s in sink dns "${SERVICES[@]}"; do running "$s" && echo "$s: running" || echo "$s: stopped"; done
    for pidfile in "$RUN"/dispatcher-*.pid; do
      [ -e "$pidfile" ] && { n="$(basename "$pidfile" .pid)"; running "$n" && echo "$n: running" || echo "$n: stopped"; }
    done
    scripts/infra.sh status
    ;;
  *) echo "usage: $0 up|dispatcher IP|down|status" >&2; exit 2 ;;
esac
