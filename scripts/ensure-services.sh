#!/usr/bin/env bash
# Make sure the services the test suite talks to answer on localhost:
#   PostgreSQL on 127.0.0.1:5432 (trust auth for local TCP; a test machine only)
#   NATS       on 127.0.0.1:4222 (with JetStream)
# Starts an existing installation, installs the Debian package when missing (needs root),
# waits (bounded) until each answers, and exits non-zero with a clear message otherwise.
# Idempotent and silent when everything is already up.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
NATS_HOST=127.0.0.1
NATS_PORT=${ENSURE_NATS_PORT:-4222}
NATS_STORE=${ENSURE_NATS_STORE:-/var/lib/nats-server}
NATS_PIDFILE=${ENSURE_NATS_PIDFILE:-/run/callbridge-nats-$NATS_PORT.pid}
WAIT_SECONDS=${ENSURE_SERVICES_WAIT:-30}

say() { echo "ensure-services: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root to run: $*"
    fi
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "$1 is not installed and apt-get is unavailable; install $1 yourself"
    say "installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# TCP probe without extra tools: bash's /dev/tcp.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_until() {  # wait_until <description> <command...>
    local what=$1; shift
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
    say "$what is up"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; }

pg_cluster_version() {  # prints the version of the first cluster on $PG_PORT, if any
    command -v pg_lsclusters >/dev/null 2>&1 || return 0
    pg_lsclusters --no-header 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1; exit }'
}

pg_trust_localhost() {  # local TCP connections without a password (test machine only)
    local version=$1
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    [ -f "$hba" ] || die "cannot find $hba to configure local trust authentication"
    if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        say "enabling trust authentication for 127.0.0.1 in $hba"
        # First matching line wins in pg_hba.conf, so put ours on top.
        as_root sed -i -e '1i host all all 127.0.0.1/32 trust' -e '1i host all all ::1/128 trust' "$hba"
    fi
}

ensure_postgres() {
    pg_ready && return 0
    if ! command -v pg_isready >/dev/null 2>&1 || [ -z "$(pg_cluster_version)" ]; then
        if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
            apt_install postgresql
        fi
        export PATH="$PATH:$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
    fi
    local version
    version=$(pg_cluster_version)
    if [ -z "$version" ]; then
        version=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1)
        [ -n "$version" ] || die "PostgreSQL is installed but no server version was found"
        say "creating PostgreSQL $version cluster 'main' on port $PG_PORT"
        as_root pg_createcluster --port "$PG_PORT" "$version" main >/dev/null
    fi
    pg_trust_localhost "$version"
    say "starting PostgreSQL $version cluster 'main'"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
        || as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null \
        || true
    wait_until "PostgreSQL on $PG_HOST:$PG_PORT" pg_ready \
        || die "PostgreSQL did not answer on $PG_HOST:$PG_PORT within ${WAIT_SECONDS}s (see /var/log/postgresql/postgresql-$version-main.log)"
}

# ---------------------------------------------------------------------------------------------
# NATS

nats_ready() { port_open "$NATS_HOST" "$NATS_PORT"; }

ensure_nats() {
    nats_ready && return 0
    local bin=/usr/sbin/nats-server
    if [ ! -x "$bin" ]; then
        bin=$(command -v nats-server || true)
        if [ -z "$bin" ]; then
            apt_install nats-server
            bin=/usr/sbin/nats-server
        fi
    fi
    [ -x "$bin" ] || die "nats-server not found after installation"
    as_root mkdir -p "$NATS_STORE"
    say "starting NATS on $NATS_HOST:$NATS_PORT"
    # The pid file makes --oknodo mean "this very server is running", not "some nats-server".
    as_root start-stop-daemon --start --oknodo --background \
        --make-pidfile --pidfile "$NATS_PIDFILE" --exec "$bin" -- \
        -a "$NATS_HOST" -p "$NATS_PORT" -js -sd "$NATS_STORE"
    wait_until "NATS on $NATS_HOST:$NATS_PORT" nats_ready \
        || die "NATS did not answer on $NATS_HOST:$NATS_PORT within ${WAIT_SECONDS}s"
}

ensure_postgres
ensure_nats
