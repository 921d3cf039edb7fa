#!/usr/bin/env bash
# A private Redis for the benchmark's baseline (bench/baselines/fastapi_celery): Debian's
# redis-server, on 127.0.0.1 only, no persistence, daemonized, data under /tmp. Works as root
# without systemd; installs redis-server first if it is missing.
#
#   scripts/redis.sh [start] [PORT]   start it (default port 6390) unless it already answers
#   scripts/redis.sh stop [PORT]      stop it
#   scripts/redis.sh status [PORT]    exit 0 if it answers
#
# Port 6390 keeps clear of a system Redis on 6379. Idempotent: starting a running instance and
# stopping a stopped one both succeed.
set -euo pipefail

cmd="${1:-start}"
case "$cmd" in
  start | stop | status) shift || true ;;
  [0-9]*) cmd=start ;;
  *)
    echo "usage: $0 [start|stop|status] [PORT]" >&2
    exit 2
    ;;
esac
port="${1:-${REDIS_PORT:-6390}}"
dir="/tmp/interlink-bench-redis-$port"
pidfile="$dir/redis.pid"

ping() { redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; }

install() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing redis-server (Debian package)" >&2
  # The package lists may be missing on a fresh machine: update once, only if the install fails.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null 2>&1 || {
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
  }
}

case "$cmd" in
  status)
    ping
    ;;
  stop)
    command -v redis-cli >/dev/null 2>&1 || exit 0
    if ping; then
      redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    fi
    for _ in $(seq 1 50); do
      ping || break
      sleep 0.1
    done
    if ping; then
      echo "redis on 127.0.0.1:$port did not stop" >&2
      exit 1
    fi
    rm -rf "$dir"
    ;;
  start)
    install
    if ping; then
      exit 0
    fi
    mkdir -p "$dir"
    # No RDB snapshots, no AOF: a benchmark broker, not a store. `daemonize yes` forks into
    # the background; the pid file lets the benchmark measure its CPU and memory.
    redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes \
      --daemonize yes --pidfile "$pidfile" --dir "$dir" --logfile "$dir/redis.log" \
      --save "" --appendonly no --loglevel warning --databases 4
    for _ in $(seq 1 100); do
      if ping; then
        exit 0
      fi
      sleep 0.05
    done
    echo "redis on 127.0.0.1:$port did not answer within 5 s; its log:" >&2
    tail -n 20 "$dir/redis.log" >&2 || true
    exit 1
    ;;
esac
