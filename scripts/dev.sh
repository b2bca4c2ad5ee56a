#!/usr/bin/env bash
# Dev mode: the whole stack on this machine, in the background.
#
#   scripts/dev.sh up     install what is missing, start RabbitMQ, FerretDB, the outbox sink
#                         and the four services; print where to send mail
#   scripts/dev.sh down   stop all of it
#   scripts/dev.sh status what runs
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUN="$ROOT/var/run"; LOGS="$ROOT/var/log"
mkdir -p "$RUN" "$LOGS" "$ROOT/var/outbox"

export HATO_MASTER_KEY_FILE="${HATO_MASTER_KEY_FILE:-$ROOT/var/master.key}"
export HATO_VERP_KEY_FILE="${HATO_VERP_KEY_FILE:-$ROOT/var/verp.key}"
export HATO_INGEST_ADMIN_TOKEN_FILE="${HATO_INGEST_ADMIN_TOKEN_FILE:-$ROOT/var/admin.token}"
export HATO_INGEST_SMTP_PORT="${HATO_INGEST_SMTP_PORT:-2525}"
export HATO_INGEST_HTTP_PORT="${HATO_INGEST_HTTP_PORT:-8025}"
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

case "${1:-up}" in
  up)
    scripts/bootstrap.sh
    scripts/infra.sh up
    .venv/bin/hato dev master-key "$HATO_MASTER_KEY_FILE" >/dev/null
    .venv/bin/hato dev cert "$HATO_INGEST_TLS_CERT_FILE" "$HATO_INGEST_TLS_KEY_FILE" >/dev/null
    for secret in "$HATO_INGEST_ADMIN_TOKEN_FILE" "$HATO_VERP_KEY_FILE"; do
      [ -s "$secret" ] || (umask 077 && .venv/bin/python -c \
        'import secrets; print(secrets.token_urlsafe(32))' >"$secret")
    done
    .venv/bin/hato dev init
    start sink .venv/bin/hato dev sink --dir "$ROOT/var/outbox" --port "$SINK_PORT"
    for s in "${SERVICES[@]}"; do start "$s" .venv/bin/python -m "services.$s"; done
    wait_ready ingest "$HATO_INGEST_OPS_PORT"; wait_ready signer "$HATO_SIGNER_OPS_PORT"
    wait_ready dispatcher "$HATO_DISPATCHER_OPS_PORT"; wait_ready bounce "$HATO_BOUNCE_OPS_PORT"
    cat <<TXT

Hato is up.
  SMTP (relays for 127.0.0.1, no AUTH)  127.0.0.1:$HATO_INGEST_SMTP_PORT   sender domain: hato.test
  submission (STARTTLS + AUTH)          127.0.0.1:$HATO_INGEST_SUBMISSION_PORT, implicit TLS 127.0.0.1:$HATO_INGEST_SMTPS_PORT
                                        (self-signed var/tls/cert.pem; a user: .venv/bin/hato credential add dev NAME)
  API key for the HTTP API              .venv/bin/hato apikey add dev
  bounces and complaints (VERP, FBL)    127.0.0.1:$HATO_BOUNCE_SMTP_PORT   (classify by hand: .venv/bin/hato bounce classify FILE)
  delivered mail lands in               var/outbox/*.eml  (sink on 127.0.0.1:$SINK_PORT)
  HTTP API (operator token in var/admin.token)  http://127.0.0.1:$HATO_INGEST_HTTP_PORT  (OpenAPI at /docs)
  ops (/healthz /readyz /metrics)       ingest :$HATO_INGEST_OPS_PORT  signer :$HATO_SIGNER_OPS_PORT  dispatcher :$HATO_DISPATCHER_OPS_PORT  bounce :$HATO_BOUNCE_OPS_PORT
  logs                                  var/log/<service>.log
  a message's state                     .venv/bin/hato message show <id from the 250 reply>
                                        curl -H "Authorization: Bearer \$(cat var/admin.token)" http://127.0.0.1:$HATO_INGEST_HTTP_PORT/v1/messages/<id>
  DKIM record of hato.test              .venv/bin/hato dkim show hato.test
Stop it with: make down
TXT
    ;;
  down)
    for s in "${SERVICES[@]}" sink; do stop "$s"; done
    scripts/infra.sh down
    ;;
  status)
    for s in sink "${SERVICES[@]}"; do running "$s" && echo "$s: running" || echo "$s: stopped"; done
    scripts/infra.sh status
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
