#!/usr/bin/env bash
# pg-cluster.sh start DIR | stop DIR | url DIR | bootstrap DIR SCHEMA...
#
# A throwaway Postgres 15 cluster under DIR (e.g. var/pg or a test temp
# dir), listening only on a unix socket in DIR/sock on a free port. Used by
# `make run` and `make test` when DATABASE_URL is unset. As root (CI), the
# cluster is owned by the unprivileged `postgres` user, since initdb and
# postgres refuse to run as root.
#
# PG_EXTRA_OPTS adds server options at start (e.g. "-c track_commit_timestamp=on").
# `start` prints nothing but progress on stderr; `url` prints the libpq URL
# of the superuser `trygg`. `bootstrap` creates one role and one schema per
# name, the role owning its schema with search_path set to it.
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?usage: pg-cluster.sh start|stop|url|bootstrap DIR}
dir=$(mkdir -p "${2:?DIR}" && cd "$2" && pwd)
shift 2

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  local p
  for p in $(shuf -i 20000-29999 -n 50); do
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && [ ! -e "$dir/sock/.s.PGSQL.$p" ]; then
      echo "$p"; return 0
    fi
  done
  echo "no free port" >&2; return 1
}

url() {
  local port; port=$(cat "$dir/port")
  echo "postgresql://trygg@/postgres?host=$dir/sock&port=$port"
}

case "$cmd" in
start)
  [ -x "$PGBIN/initdb" ] || { echo "Postgres 15 server missing: run deploy/install-deps.sh" >&2; exit 1; }
  mkdir -p "$dir/sock"
  [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$dir" && chmod 755 "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$PGBIN/initdb" -D "$dir/data" -A trust -U trygg -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  # A stale postmaster.pid from an interrupted run would block the start.
  if [ -f "$dir/data/postmaster.pid" ]; then
    oldpid=$(head -1 "$dir/data/postmaster.pid")
    kill -0 "$oldpid" 2>/dev/null || rm -f "$dir/data/postmaster.pid"
  fi
  port=$(free_port)
  echo "$port" > "$dir/port"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir/port"
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
    -o "-k $dir/sock -c listen_addresses='' -p $port -c max_connections=200 -c fsync=${PG_FSYNC:-on} ${PG_EXTRA_OPTS:-}" start >/dev/null
  echo "postgres: $(url)" >&2
  ;;
stop)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null || true
  fi
  ;;
url)
  url
  ;;
bootstrap)
  u=$(url)
  for s in "$@"; do
    PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -q -v ON_ERROR_STOP=1 "$u" <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$s') THEN
    CREATE ROLE "$s" LOGIN;
  END IF;
END \$\$;
CREATE SCHEMA IF NOT EXISTS "$s" AUTHORIZATION "$s";
ALTER ROLE "$s" SET search_path = "$s";
REVOKE ALL ON SCHEMA "$s" FROM PUBLIC;
SQL
  done
  ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac
