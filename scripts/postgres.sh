#!/usr/bin/env bash
# A local PostgreSQL server for Interlink's tests and for trying the PostgreSQL backend.
#
#   bash scripts/postgres.sh install start setup   # what CI runs; every step is idempotent
#   bash scripts/postgres.sh stop | kill | status | urls   # kill: stop -m immediate, a crash
#   bash scripts/postgres.sh createdb NAME | dropdb NAME   # throwaway databases for tests
#
# `install` installs the Debian packages when they are missing. `start` creates (once) and starts a
# cluster of its own, listening on 127.0.0.1 only (port INTERLINK_PG_PORT, default 5433) with
# trust authentication on loopback: a TEST server, never one to hold real data. `setup` creates
#
#   interlink_owner  LOGIN CREATEDB: owns the schema, runs the migrations, creates test databases
#   interlink_app    LOGIN NOSUPERUSER NOBYPASSRLS, owns nothing: the role tenant-scoped work uses;
#                    SELECT/INSERT/UPDATE/DELETE on the owner's tables and USAGE on its sequences,
#                    through ALTER DEFAULT PRIVILEGES FOR ROLE interlink_owner
#   interlink_template  a template database with those grants; tests copy it for a fresh database
#   interlink        the database itself, made from that template
#
# Without systemd: the cluster is driven by pg_ctlcluster (which calls pg_ctl directly).
set -euo pipefail

PORT="${INTERLINK_PG_PORT:-5433}"
CLUSTER="${INTERLINK_PG_CLUSTER:-interlink}"
HOST=127.0.0.1
TEMPLATE=interlink_template
DATABASE=interlink
OWNER=interlink_owner
APP=interlink_app

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

say() { echo "postgres.sh: $*"; }
die() {
  echo "postgres.sh: $*" >&2
  exit 1
}

pg_version() {
  # The newest server installed, unless INTERLINK_PG_VERSION names one.
  if [ -n "${INTERLINK_PG_VERSION:-}" ]; then
    echo "$INTERLINK_PG_VERSION"
    return
  fi
  local v
  v="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null |
    awk -F/ '{print $5}' | sort -V | tail -n 1)"
  [ -n "$v" ] || die "no PostgreSQL server installed (run: bash scripts/postgres.sh install)"
  echo "$v"
}

installed() {
  command -v pg_createcluster >/dev/null 2>&1 &&
    command -v pg_ctlcluster >/dev/null 2>&1 &&
    command -v psql >/dev/null 2>&1 &&
    dpkg -s postgresql-contrib >/dev/null 2>&1 &&
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

cmd_install() {
  if installed; then
    say "PostgreSQL $(pg_version) is installed"
    return
  fi
  local packages=(postgresql postgresql-contrib)
  say "installing: ${packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package lists are fetched first when there are none, and again if the install fails on
  # stale ones.
  if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
    $sudo apt-get update -qq
  fi
  if ! $sudo apt-get install -y -qq "${packages[@]}" >/dev/null; then
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
  fi
  installed || die "the packages installed but PostgreSQL's programs are missing"
  say "PostgreSQL $(pg_version) installed"
}

confdir() { echo "/etc/postgresql/$(pg_version)/$CLUSTER"; }

cluster_exists() { [ -f "$(confdir)/postgresql.conf" ]; }

cluster_online() {
  pg_lsclusters --no-header 2>/dev/null |
    awk -v v="$(pg_version)" -v c="$CLUSTER" '$1 == v && $2 == c && $4 == "online" {found = 1} END {exit !found}'
}

write_config() {
  # Everything this script decides about the cluster, rewritten on every start; returns 0 when a
  # file changed (a running server must then restart to pick it up).
  local dir changed=1 conf hba
  dir="$(confdir)"
  conf="$(
    cat <<EOF
# Written by scripts/postgres.sh: a test server for Interlink. Edits here are overwritten.
listen_addresses = '$HOST'
port = $PORT
max_connections = 200
ssl = off
# Durability stays as in production (fsync on): the tests measure nothing they should not.
fsync = on
shared_buffers = 128MB
log_min_messages = warning
EOF
  )"
  hba="$(
    cat <<'EOF'
# Written by scripts/postgres.sh: trust on loopback, for tests only. Edits here are overwritten.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
host    all       all   ::1/128       trust
EOF
  )"
  $sudo mkdir -p "$dir/conf.d"
  if [ "$(cat "$dir/conf.d/interlink.conf" 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" | $sudo tee "$dir/conf.d/interlink.conf" >/dev/null
    changed=0
  fi
  if [ "$(cat "$dir/pg_hba.conf" 2>/dev/null)" != "$hba" ]; then
    printf '%s\n' "$hba" | $sudo tee "$dir/pg_hba.conf" >/dev/null
    changed=0
  fi
  $sudo chown -R postgres:postgres "$dir"
  return $changed
}

wait_ready() {
  local i
  for i in $(seq 1 60); do
    if pg_isready -q -h "$HOST" -p "$PORT"; then
      return 0
    fi
    sleep 0.5
  done
  die "the server did not accept connections on $HOST:$PORT (see /var/log/postgresql/postgresql-$(pg_version)-$CLUSTER.log)"
}

cmd_start() {
  installed || die "PostgreSQL is not installed (run: bash scripts/postgres.sh install)"
  local version
  version="$(pg_version)"
  if ! cluster_exists; then
    say "creating cluster $version/$CLUSTER on port $PORT"
    $sudo pg_createcluster "$version" "$CLUSTER" -p "$PORT" --start-conf=manual \
      --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  fi
  # pg_ctlcluster puts the socket here; without systemd's tmpfiles nothing else creates it.
  $sudo install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  if write_config && cluster_online; then
    say "configuration changed: restarting $version/$CLUSTER"
    $sudo pg_ctlcluster "$version" "$CLUSTER" restart
  elif ! cluster_online; then
    $sudo pg_ctlcluster "$version" "$CLUSTER" start
  fi
  wait_ready
  say "cluster $version/$CLUSTER is running on $HOST:$PORT"
}

cmd_stop() {
  if installed && cluster_exists && cluster_online; then
    $sudo pg_ctlcluster "$(pg_version)" "$CLUSTER" stop
    say "cluster $(pg_version)/$CLUSTER stopped"
  else
    say "cluster $CLUSTER is not running"
  fi
}

cmd_kill() {
  # What a crash looks like to the clients: every backend gone at once, no shutdown checkpoint.
  if installed && cluster_exists && cluster_online; then
    $sudo pg_ctlcluster "$(pg_version)" "$CLUSTER" stop -m immediate
    say "cluster $(pg_version)/$CLUSTER stopped (immediate)"
  fi
}

cmd_status() {
  if installed && cluster_exists && cluster_online && pg_isready -q -h "$HOST" -p "$PORT"; then
    say "cluster $(pg_version)/$CLUSTER is running on $HOST:$PORT"
  else
    say "cluster $CLUSTER is not running"
    return 3
  fi
}

psql_as() {
  # psql_as ROLE DATABASE [psql args...]: stops at the first error.
  local role="$1" db="$2"
  shift 2
  PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U "$role" -d "$db" "$@"
}

grant_database() {
  # The schema belongs to the owner; the app role may use it and, through default privileges,
  # read and write every table (and use every sequence) the owner creates in it.
  psql_as postgres "$1" <<SQL
ALTER SCHEMA public OWNER TO $OWNER;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO $APP;
ALTER DEFAULT PRIVILEGES FOR ROLE $OWNER IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO $APP;
ALTER DEFAULT PRIVILEGES FOR ROLE $OWNER IN SCHEMA public
  GRANT USAGE ON SEQUENCES TO $APP;
-- What the owner made before these defaults existed.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO $APP;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO $APP;
SQL
}

create_database() {
  # create_database NAME: a copy of the template, owned by interlink_owner (no-op if it exists).
  psql_as postgres postgres -v name="$1" -v owner="$OWNER" -v template="$TEMPLATE" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I TEMPLATE %I', :'name', :'owner', :'template')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name')
\gexec
SQL
}

cmd_setup() {
  cmd_status >/dev/null || die "the server is not running (run: bash scripts/postgres.sh start)"
  psql_as postgres postgres <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$OWNER') THEN
    CREATE ROLE $OWNER;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP') THEN
    CREATE ROLE $APP;
  END IF;
END
\$\$;
ALTER ROLE $OWNER LOGIN CREATEDB NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE $APP LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
-- Lets the owner end the sessions on a test database it drops (DROP DATABASE ... WITH (FORCE)),
-- those of interlink_app included; it cannot signal a superuser's.
GRANT pg_signal_backend TO $OWNER;
SELECT format('CREATE DATABASE %I OWNER %I', '$TEMPLATE', '$OWNER')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$TEMPLATE')
\gexec
SQL
  grant_database "$TEMPLATE"
  # A template any CREATEDB role may copy (tests connect as interlink_owner).
  psql_as postgres postgres -c "ALTER DATABASE $TEMPLATE OWNER TO $OWNER" \
    -c "ALTER DATABASE $TEMPLATE IS_TEMPLATE true"
  create_database "$DATABASE"
  grant_database "$DATABASE"
  say "database $DATABASE ready; roles $OWNER (schema owner, migrations) and $APP (application)"
  cmd_urls
}

valid_name() {
  [[ "$1" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "not a database name: '$1' (a-z, 0-9, _)"
  case "$1" in
    postgres | template0 | template1 | "$TEMPLATE" | "$DATABASE") die "refusing to touch '$1'" ;;
  esac
}

cmd_createdb() {
  valid_name "$1"
  create_database "$1"
  echo "postgresql://$OWNER@$HOST:$PORT/$1"
}

cmd_dropdb() {
  valid_name "$1"
  psql_as postgres postgres -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)"
}

cmd_urls() {
  echo "owner (migrations):   postgresql://$OWNER@$HOST:$PORT/$DATABASE"
  echo "application:          postgresql://$APP@$HOST:$PORT/$DATABASE"
  echo "tests (CREATEDB):     INTERLINK_TEST_POSTGRES_URL=postgresql://$OWNER@$HOST:$PORT/postgres"
}

usage() {
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

[ $# -gt 0 ] || usage
while [ $# -gt 0 ]; do
  step="$1"
  shift
  case "$step" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    kill) cmd_kill ;;
    status) cmd_status ;;
    setup) cmd_setup ;;
    urls) cmd_urls ;;
    createdb | dropdb)
      [ $# -gt 0 ] || die "$step needs a database name"
      "cmd_$step" "$1"
      shift
      ;;
    *) usage ;;
  esac
done
