#!/usr/bin/env bash
# Backup and restore of Interlink on PostgreSQL, with PostgreSQL's own tools.
#
#   bash scripts/pg-backup.sh backup  OWNER_URL FILE   # online: one consistent snapshot
#   bash scripts/pg-backup.sh restore OWNER_URL FILE   # into an empty database, all or nothing
#
# OWNER_URL is the schema owner's URL (what INTERLINK_MIGRATION_DATABASE_URL names), e.g.
# postgresql://interlink_owner@db.internal:5432/interlink. `backup` runs pg_dump in its custom
# format: the database as of one snapshot, taken while Interlink keeps running; the file is
# written beside FILE and renamed, so FILE is a whole backup or is not there. `restore` runs
# pg_restore in one transaction into a database with no Interlink tables yet (create it from
# the same template as the first: the application role's grants), then Interlink starts on it as
# after a crash: pending deliveries resume, delivered ones are not sent again. The roles
# (interlink_owner, interlink_app) are the cluster's, not the dump's: they must exist there.
#
# Secrets are sealed in the dump with INTERLINK_SECRETS_KEY, which is not in it: keep the key
# apart from the backups. What an operator must also do about erasure and old backups: README.
set -euo pipefail

usage() {
  echo "usage: $0 backup|restore OWNER_URL FILE" >&2
  exit 2
}
[ $# -eq 3 ] || usage
action=$1 url=$2 file=$3

# Interlink's tables force row-level security on their owner too; a backup is the operator's
# system-wide work, in the scope every tenant's rows are visible in (storage/rls.py).
export PGOPTIONS="${PGOPTIONS:-} -c interlink.scope=system"

case "$action" in
  backup)
    if [ -e "$file" ]; then
      echo "pg-backup.sh: $file exists: give a new file name (a backup never overwrites)" >&2
      exit 1
    fi
    partial="$(dirname "$file")/.$(basename "$file").partial"
    rm -f "$partial"
    (umask 077 && pg_dump --no-password --enable-row-security --format=custom --compress=6 --file="$partial" "$url")
    mv "$partial" "$file"
    echo "pg-backup.sh: backed up to $file; the secrets key is not in it"
    ;;
  restore)
    [ -f "$file" ] || { echo "pg-backup.sh: no backup at $file" >&2; exit 1; }
    tables=$(psql --no-password -tAX -d "$url" \
      -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    if [ "$tables" != "0" ]; then
      echo "pg-backup.sh: the target database has $tables tables: restore into an empty one" >&2
      exit 1
    fi
    pg_restore --no-password --enable-row-security --exit-on-error --single-transaction --dbname="$url" "$file"
    echo "pg-backup.sh: restored $file"
    ;;
  *) usage ;;
esac
