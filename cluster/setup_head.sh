#!/usr/bin/env bash
# Head-node services of a vac-study Ray cluster (run inside the Ray container by
# cluster.yaml's head_setup_commands; cluster-onprem.yaml runs it on the head host):
#
#   PostgreSQL on 127.0.0.1:5432  databases "optuna" (Optuna storage) and "mlflow" (MLflow backend)
#   MLflow tracking server on 127.0.0.1:5000, artifacts proxied to $VAC_ARTIFACTS
#
# Both listen on loopback only: the Tune driver that writes to them runs on the head; people
# reach them through SSH tunnels (docs/cluster.md). The database password is generated here,
# on the head, and kept in ~/.pgpass (mode 600), which libpq reads, so that the storage URLs
# (postgresql://vac@127.0.0.1:5432/optuna) carry no secret and can be logged.
#
# Usage: setup_head.sh start | stop | status | backup | urls
# Config: ~/.vac-study/cluster.env (VAC_S3_URI=s3://bucket/prefix, or VAC_ARTIFACTS=/nfs/path
# on premises), VAC_DB_DIR (default ~/vac-db), VAC_PG_PORT (5432), VAC_MLFLOW_PORT (5000).
set -euo pipefail

ENV_FILE="${VAC_ENV_FILE:-$HOME/.vac-study/cluster.env}"
# shellcheck disable=SC1090
[[ -f "$ENV_FILE" ]] && source "$ENV_FILE"
DB_DIR="${VAC_DB_DIR:-$HOME/vac-db}"
PGDATA="$DB_DIR/pgdata"
PG_PORT="${VAC_PG_PORT:-5432}"
MLFLOW_PORT="${VAC_MLFLOW_PORT:-5000}"
PG_USER=vac
ARTIFACTS="${VAC_ARTIFACTS:-${VAC_S3_URI:+$VAC_S3_URI/mlflow-artifacts}}"

log() { echo "[setup_head] $*"; }

# The directory with all of PostgreSQL's server and client programs (Debian/Ubuntu keep them in
# /usr/lib/postgresql/VERSION/bin; elsewhere, next to initdb on the PATH).
pg_bin() {
  local d; d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [[ -z "$d" ]] && command -v initdb >/dev/null 2>&1; then d=$(dirname "$(command -v initdb)"); fi
  if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/psql" ]]; then echo "$d"; fi
}

install_postgres() {
  if [[ -z "$(pg_bin)" ]]; then
    log "installing PostgreSQL"
    local SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  fi
}

start_postgres() {
  local bin; bin=$(pg_bin)
  mkdir -p "$DB_DIR"; chmod 700 "$DB_DIR"
  if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    log "initialising $PGDATA"
    umask 077
    python -c "import secrets; print(secrets.token_urlsafe(32))" > "$DB_DIR/pg_password"
    "$bin/initdb" -D "$PGDATA" -U "$PG_USER" --pwfile="$DB_DIR/pg_password" \
      --auth-local=scram-sha-256 --auth-host=scram-sha-256 >/dev/null
    # Loopback only; concurrent writers (several MLflow server workers, the Tune driver,
    # optuna-dashboard, a second study) are what PostgreSQL is here for.
    cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
max_connections = 200
unix_socket_directories = '$DB_DIR'
CONF
  fi
  umask 077
  printf '127.0.0.1:%s:*:%s:%s\n' "$PG_PORT" "$PG_USER" "$(cat "$DB_DIR/pg_password")" > "$HOME/.pgpass"
  chmod 600 "$HOME/.pgpass"
  if ! "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    "$bin/pg_ctl" -D "$PGDATA" -l "$DB_DIR/postgres.log" -w start >/dev/null
  fi
  for db in optuna mlflow; do
    if [[ -z $(psql_q postgres "SELECT 1 FROM pg_database WHERE datname='$db'") ]]; then
      psql_q postgres "CREATE DATABASE $db" >/dev/null
      log "created database $db"
    fi
  done
}

# true when URL answers 2xx (python, not curl: the Ray image need not have curl)
http_ok() { python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)" "$1" >/dev/null 2>&1; }

psql_q() { "$(pg_bin)/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$1" -tAc "$2"; }

start_mlflow() {
  if [[ -z "$ARTIFACTS" ]]; then
    echo "error: set VAC_S3_URI (or VAC_ARTIFACTS) in $ENV_FILE" >&2; exit 2
  fi
  if http_ok "http://127.0.0.1:$MLFLOW_PORT/health"; then
    log "MLflow already up on 127.0.0.1:$MLFLOW_PORT"; return
  fi
  nohup mlflow server --host 127.0.0.1 --port "$MLFLOW_PORT" \
    --backend-store-uri "postgresql://$PG_USER@127.0.0.1:$PG_PORT/mlflow" \
    --artifacts-destination "$ARTIFACTS" --serve-artifacts \
    > "$DB_DIR/mlflow.log" 2>&1 &
  echo $! > "$DB_DIR/mlflow.pid"
  local pid; pid=$(cat "$DB_DIR/mlflow.pid")
  for _ in $(seq 1 90); do
    http_ok "http://127.0.0.1:$MLFLOW_PORT/health" && { log "MLflow up on 127.0.0.1:$MLFLOW_PORT"; return; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 2
  done
  echo "error: MLflow did not start; see $DB_DIR/mlflow.log" >&2; tail -5 "$DB_DIR/mlflow.log" >&2; exit 1
}

urls() {
  echo "--tracking-uri http://127.0.0.1:$MLFLOW_PORT"
  echo "--storage postgresql://$PG_USER@127.0.0.1:$PG_PORT/optuna"
  [[ -n "${VAC_S3_URI:-}" ]] && echo "--storage-path $VAC_S3_URI/ray"
  [[ -n "${VAC_SHARED_DIR:-}" ]] && echo "--storage-path $VAC_SHARED_DIR/ray"
  return 0
}

case "${1:-start}" in
  start) install_postgres; start_postgres; start_mlflow; urls ;;
  stop)
    [[ -f "$DB_DIR/mlflow.pid" ]] && kill "$(cat "$DB_DIR/mlflow.pid")" 2>/dev/null || true
    rm -f "$DB_DIR/mlflow.pid"
    "$(pg_bin)/pg_ctl" -D "$PGDATA" -w stop >/dev/null 2>&1 || true ;;
  status)
    "$(pg_bin)/pg_ctl" -D "$PGDATA" status
    http_ok "http://127.0.0.1:$MLFLOW_PORT/health" && echo "mlflow ok on 127.0.0.1:$MLFLOW_PORT" ;;
  backup)
    ts=$(date -u +%Y%m%dT%H%M%SZ)
    for db in optuna mlflow; do
      "$(pg_bin)/pg_dump" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -Fc "$db" > "$DB_DIR/$db-$ts.dump"
      log "dumped $DB_DIR/$db-$ts.dump"
      if [[ -n "${VAC_S3_URI:-}" ]]; then
        python - "$DB_DIR/$db-$ts.dump" "$VAC_S3_URI/backups/$db-$ts.dump" <<'PY'
import sys, boto3
src, dst = sys.argv[1], sys.argv[2]
bucket, _, key = dst[len("s3://"):].partition("/")
boto3.client("s3").upload_file(src, bucket, key)
print(f"[setup_head] uploaded {dst}")
PY
      fi
    done ;;
  urls) urls ;;
  *) echo "usage: $0 start|stop|status|backup|urls" >&2; exit 2 ;;
esac
