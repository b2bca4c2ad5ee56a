#!/usr/bin/env bash
# Installs (when missing) and starts the two servers Hato needs on this machine:
# RabbitMQ from Debian's rabbitmq-server and FerretDB v1.24.2 (SQLite backend,
# data under var/ferretdb/). Idempotent: running `up` twice starts nothing twice.
#
#   scripts/infra.sh up       install what is missing, start both, wait until ready
#   scripts/infra.sh down     stop what `up` started
#   scripts/infra.sh status   say what runs
#   scripts/infra.sh browser-tools   install Debian's chromium and chromium-driver for the
#                             console's browser test
#   scripts/infra.sh prometheus-tools   install Debian's prometheus (prometheus, promtool) for
#                             the dashboard and alert tests; its system service is not started
#
# RabbitMQ's management HTTP API (rabbitmq_management, for `hato amqp user`) is on
# 127.0.0.1:15672; its own metrics (the rabbitmq_prometheus plugin) on 127.0.0.1:15692/metrics and
# FerretDB's (process and Go runtime) on $HATO_FERRETDB_DEBUG_ADDR/debug/metrics (127.0.0.1:8088
# for the server on 27017), as deploy/prometheus scrapes them.
#
# HATO_AMQP_URL / HATO_MONGODB_URL set to other servers: those are used and
# nothing is started for them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="$ROOT/var"
RUN="$VAR/run"
FERRET_BIN="$ROOT/var/bin/ferretdb"
FERRET_ADDR="${HATO_FERRETDB_ADDR:-127.0.0.1:27017}"
# Data under var/ferretdb/, or var/ferretdb-<port>/ for a server on another port: two servers
# must never share SQLite files.
FERRET_DATA="ferretdb"; [ "${FERRET_ADDR##*:}" = 27017 ] || FERRET_DATA="ferretdb-${FERRET_ADDR##*:}"
# Its metrics: FerretDB's usual debug address for the default server, none for another one
# unless asked for (two servers cannot share the port).
FERRET_DEBUG_DEFAULT=""; [ "${FERRET_ADDR##*:}" = 27017 ] && FERRET_DEBUG_DEFAULT="127.0.0.1:8088"
FERRET_DEBUG_ADDR="${HATO_FERRETDB_DEBUG_ADDR-$FERRET_DEBUG_DEFAULT}"
mkdir -p "$RUN" "$VAR/log" "$VAR/$FERRET_DATA" "$VAR/bin"

log() { printf 'infra: %s\n' "$*" >&2; }
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

port_open() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && exec 3>&- 3<&-
}

wait_port() { # host port seconds what
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$1" "$2" && return 0
    sleep 0.1
  done
  log "$4 did not open $1:$2 within $3 s"; return 1
}

external_amqp() { [ -n "${HATO_AMQP_URL:-}" ] && [[ "$HATO_AMQP_URL" != *"@127.0.0.1:5672"* && "$HATO_AMQP_URL" != *"@localhost:5672"* ]]; }
external_mongo() { [ -n "${HATO_MONGODB_URL:-}" ] && [[ "$HATO_MONGODB_URL" != *"127.0.0.1:${FERRET_ADDR##*:}"* && "$HATO_MONGODB_URL" != *"localhost:${FERRET_ADDR##*:}"* ]]; }

apt_install() {
  log "installing $*"
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -f "$RUN/apt-updated" ]; then sudo_ apt-get update -qq && touch "$RUN/apt-updated"; fi
  sudo_ apt-get install -y -qq --no-install-recommends "$@" >"$VAR/log/apt.log" 2>&1 \
    || { tail -20 "$VAR/log/apt.log" >&2; return 1; }
}

rabbit_up() {
  if external_amqp; then log "using HATO_AMQP_URL, not starting RabbitMQ"; return; fi
  command -v rabbitmq-server >/dev/null || [ -x /usr/sbin/rabbitmq-server ] || apt_install rabbitmq-server
  export PATH="$PATH:/usr/sbin:/usr/lib/rabbitmq/bin"
  if port_open 127.0.0.1 5672; then log "RabbitMQ already listening on 5672"; return; fi
  log "starting RabbitMQ"
  # One Erlang scheduler unless the caller sets the emulator's arguments: on a developer's or
  # CI's few cores the broker shares the CPU with the services, and two schedulers handing
  # work to each other cost it about an eighth more CPU a mail (README: Benchmarks).
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="${RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS-+S 1:1}"
  # RabbitMQ needs a file handle per queue it recovers; started as root it goes through su,
  # whose pam_limits give it 1024, too few once runs of the suite left queues behind. So
  # root starts it as the rabbitmq user directly, with the hard limit as the soft one.
  if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    (ulimit -Sn "$(ulimit -Hn)"; cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq \
      setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups rabbitmq-server -detached) \
      >"$VAR/log/rabbitmq-start.log" 2>&1 || true
  else
    sudo_ env RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS" \
      rabbitmq-server -detached >"$VAR/log/rabbitmq-start.log" 2>&1 || true
  fi
  touch "$RUN/rabbitmq.started-by-hato"
  sudo_ timeout 90 rabbitmqctl await_startup >/dev/null 2>&1 || wait_port 127.0.0.1 5672 60 RabbitMQ
  wait_port 127.0.0.1 5672 60 RabbitMQ
  log "RabbitMQ ready on 127.0.0.1:5672"
}

rabbit_metrics() { # RabbitMQ's own Prometheus endpoint (rabbitmq_prometheus), enabled online
  if external_amqp || port_open 127.0.0.1 15692; then return 0; fi
  export PATH="$PATH:/usr/sbin:/usr/lib/rabbitmq/bin"
  log "enabling the rabbitmq_prometheus plugin (metrics on 127.0.0.1:15692)"
  sudo_ rabbitmq-plugins enable rabbitmq_prometheus >>"$VAR/log/rabbitmq-start.log" 2>&1 \
    || { log "could not enable rabbitmq_prometheus (see var/log/rabbitmq-start.log)"; return 0; }
  wait_port 127.0.0.1 15692 30 "RabbitMQ's metrics" || true
}

rabbit_management() { # RabbitMQ's management HTTP API (rabbitmq_management), enabled online:
  # `hato amqp user` creates the platform teams' users through it
  if external_amqp || port_open 127.0.0.1 15672; then return 0; fi
  export PATH="$PATH:/usr/sbin:/usr/lib/rabbitmq/bin"
  log "enabling the rabbitmq_management plugin (HTTP API on 127.0.0.1:15672)"
  sudo_ rabbitmq-plugins enable rabbitmq_management >>"$VAR/log/rabbitmq-start.log" 2>&1 \
    || { log "could not enable rabbitmq_management (see var/log/rabbitmq-start.log)"; return 0; }
  wait_port 127.0.0.1 15672 30 "RabbitMQ's management API" || true
}

go_ok() { # FerretDB's SQLite driver (tools/ferretdb/go.mod) needs Go 1.26 or newer
  command -v go >/dev/null && go version | grep -Eq 'go1\.(2[6-9]|[3-9][0-9])'
}

ferret_build() {
  # Built from FerretDB v1.24.2 with tools/ferretdb/*.patch applied: _id lookups use the
  # _id index (unpatched, each one reads the whole collection), and an update writes the
  # documents it modifies in one transaction (unpatched, one transaction and fsync each),
  # release builds skip debug-only logging and leak tracking, and a database's writers take
  # turns on a mutex (unpatched, SQLite's busy handler slept them 1-100 ms at a time), and
  # statements are prepared once (unpatched, each was parsed again on every call). The
  # patches go on in the order tools/ferretdb/series gives.
  local stamp src mod patch patches=()
  mapfile -t patches < <(sed -e '/^#/d' -e '/^$/d' -e "s#^#$ROOT/tools/ferretdb/#" \
    "$ROOT/tools/ferretdb/series")
  stamp="$(cat "$ROOT/tools/ferretdb/go.mod" "$ROOT/tools/ferretdb/main.go" \
    "$ROOT/tools/ferretdb/series" "${patches[@]}" | sha256sum | cut -c1-16)"
  [ -x "$FERRET_BIN" ] && [ "$(cat "$FERRET_BIN.stamp" 2>/dev/null)" = "$stamp" ] && return
  export PATH="$PATH:/usr/local/go/bin:/usr/lib/go/bin"
  go_ok || apt_install golang-go || true
  go_ok || { log "FerretDB needs Go 1.26 or newer to build; install Go 1.26+ and run again"; return 1; }
  log "building FerretDB v1.24.2 with Hato's patches (one-off, about a minute)"
  src="$VAR/build/FerretDB-v1.24.2-patched"
  mod="$(cd "$ROOT/tools/ferretdb" && go mod download -json github.com/FerretDB/FerretDB |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$mod" ] || { log "could not download FerretDB's module"; return 1; }
  rm -rf "$src" && mkdir -p "$VAR/build" && cp -r "$mod" "$src" && chmod -R u+w "$src"
  for patch in "${patches[@]}"; do patch -s -d "$src" -p1 <"$patch"; done
  cp "$ROOT/tools/ferretdb/go.mod" "$VAR/build/ferretdb.mod"
  cp "$ROOT/tools/ferretdb/go.sum" "$VAR/build/ferretdb.sum"
  echo "replace github.com/FerretDB/FerretDB => $src" >>"$VAR/build/ferretdb.mod"
  (cd "$ROOT/tools/ferretdb" && go build -modfile "$VAR/build/ferretdb.mod" -o "$FERRET_BIN" .)
  echo "$stamp" >"$FERRET_BIN.stamp"
}

whose_server() { # port: which process serves it, and whether it is this checkout's FerretDB
  local pid cmd
  pid="$(ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)"
  if [ -n "$pid" ] && [ "$pid" = "$(cat "$RUN/ferretdb.pid" 2>/dev/null)" ]; then
    echo "FerretDB of this checkout already running (pid $pid, data in var/$FERRET_DATA/)"; return
  fi
  cmd="$([ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  if [ -n "$cmd" ]; then cmd="pid $pid: ${cmd% }"; else cmd="its process is not visible here"; fi
  echo "port $1 is taken by a MongoDB-compatible server that this checkout did not start" \
    "($cmd); Hato will keep its" \
    "data there. If it is another checkout's, its keys are sealed with another master key:" \
    "stop it there (make down) or start this one on its own port" \
    "(HATO_FERRETDB_ADDR=127.0.0.1:27018 make up)"
}

ferret_up() {
  if external_mongo; then log "using HATO_MONGODB_URL, not starting FerretDB"; return; fi
  local host="${FERRET_ADDR%:*}" port="${FERRET_ADDR##*:}"
  if port_open "$host" "$port"; then log "$(whose_server "$port")"; return; fi
  ferret_build
  log "starting FerretDB on $FERRET_ADDR (data in var/$FERRET_DATA/)"
  nohup "$FERRET_BIN" --listen-addr "$FERRET_ADDR" --sqlite-url "file:$VAR/$FERRET_DATA/" --log-level error \
    --debug-addr "$FERRET_DEBUG_ADDR" >>"$VAR/log/ferretdb.log" 2>&1 &
  echo $! >"$RUN/ferretdb.pid"
  wait_port "$host" "$port" 30 FerretDB
  log "FerretDB ready on $FERRET_ADDR"
}

stop_pidfile() { # file
  [ -f "$1" ] || return 0
  local pid; pid="$(cat "$1")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

case "${1:-up}" in
  up) rabbit_up; rabbit_metrics; rabbit_management; ferret_up ;;
  build) ferret_build ;;
  prometheus-tools) # Debian's prometheus package: prometheus and promtool, for the dashboard and
    # alert rule tests (tests/e2e/test_observe.py, tests/unit/test_observability.py). Those start
    # their own Prometheus; the package's system service is kept from starting.
    if [ ! -x /usr/bin/prometheus ] || [ ! -x /usr/bin/promtool ]; then
      policy=""
      if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | sudo_ tee /usr/sbin/policy-rc.d >/dev/null
        sudo_ chmod 0755 /usr/sbin/policy-rc.d; policy=1
      fi
      apt_install prometheus || { [ -n "$policy" ] && sudo_ rm -f /usr/sbin/policy-rc.d; exit 1; }
      [ -n "$policy" ] && sudo_ rm -f /usr/sbin/policy-rc.d
      # Where systemd runs, the package enables and may have started its unit regardless.
      if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        sudo_ systemctl disable --now prometheus >/dev/null 2>&1 || true
      fi
    fi ;;
  test-tools)
    perl -MMail::DKIM::Verifier -e 1 2>/dev/null || apt_install libmail-dkim-perl ;;
  browser-tools) # Debian's chromium and chromium-driver: the console's browser test
    # (tests/e2e/test_console_browser.py) drives them through Selenium (a pinned dev dependency)
    if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
      apt_install chromium chromium-driver fonts-noto-cjk
    fi ;;
  bench-tools) # Postfix (with smtp-source) and OpenDKIM for `make bench`; Postfix itself is not
    # configured or started system-wide: the benchmark runs its own instance.
    if [ ! -x /usr/sbin/smtp-source ] || [ ! -x /usr/sbin/opendkim ]; then
      echo "postfix postfix/main_mailer_type select No configuration" | sudo_ debconf-set-selections
      apt_install postfix opendkim
    fi
    export PATH="$PATH:/usr/local/go/bin:/usr/lib/go/bin"
    (cd "$ROOT/tools/benchkit" && go build -o "$VAR/bin/benchkit" .) ;;
  compose-check) # tools/composecheck: docker-compose.yml through the Compose Specification's loader
    # (compose-go), for tests/unit/test_deploy_files.py; rebuilt only when its source changed.
    export PATH="$PATH:/usr/local/go/bin:/usr/lib/go/bin"
    stamp="$(cat "$ROOT"/tools/composecheck/go.* "$ROOT/tools/composecheck/main.go" | sha256sum | cut -c1-16)"
    if [ ! -x "$VAR/bin/composecheck" ] || [ "$(cat "$VAR/bin/composecheck.stamp" 2>/dev/null)" != "$stamp" ]; then
      go_ok || apt_install golang-go || true
      go_ok || { log "the compose checker needs Go 1.26 or newer to build"; exit 1; }
      (cd "$ROOT/tools/composecheck" && go build -o "$VAR/bin/composecheck" .)
      echo "$stamp" >"$VAR/bin/composecheck.stamp"
    fi ;;
  k8s-tools) # kustomize and the Prometheus Operator's CRDs, from the Go module proxy, for
    # tests/unit/test_k8s.py (offline validation of deploy/k8s/); only what is missing.
    export PATH="$PATH:/usr/local/go/bin:/usr/lib/go/bin"
    KUSTOMIZE_VERSION=v5.8.2  # its go.mod asks for Go 1.26
    PROMETHEUS_OPERATOR_VERSION=v0.85.0
    if [ "$("$VAR/bin/kustomize" version 2>/dev/null)" != "$KUSTOMIZE_VERSION" ]; then
      command -v go >/dev/null && go version | grep -Eq 'go1\.(2[6-9]|[3-9][0-9])' \
        || { log "kustomize $KUSTOMIZE_VERSION needs Go 1.26 or newer to build"; exit 1; }
      log "building kustomize $KUSTOMIZE_VERSION into var/bin/ (one-off)"
      GOBIN="$VAR/bin" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
    fi
    crds="$VAR/k8s/crds/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
    if [ ! -f "$crds/.complete" ]; then
      mod="$(cd "$VAR" && go mod download -json \
        "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
      [ -d "$mod" ] || { log "could not download the Prometheus Operator's module"; exit 1; }
      mkdir -p "$crds"
      for kind in podmonitors servicemonitors prometheusrules; do
        install -m 0644 "$mod/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$crds/"
      done
      touch "$crds/.complete"
    fi ;;
  down)
    stop_pidfile "$RUN/ferretdb.pid"
    if [ -f "$RUN/rabbitmq.started-by-hato" ]; then
      export PATH="$PATH:/usr/sbin"
      sudo_ rabbitmqctl stop >/dev/null 2>&1 || true
      rm -f "$RUN/rabbitmq.started-by-hato"
    fi
    log "stopped" ;;
  status)
    port_open 127.0.0.1 5672 && echo "rabbitmq: up (127.0.0.1:5672)" || echo "rabbitmq: down"
    port_open "${FERRET_ADDR%:*}" "${FERRET_ADDR##*:}" && echo "mongodb: up ($FERRET_ADDR)" || echo "mongodb: down" ;;
  *) echo "usage: $0 up|down|status|build|test-tools|browser-tools|bench-tools|compose-check|k8s-tools|prometheus-tools" >&2; exit 2 ;;
esac
