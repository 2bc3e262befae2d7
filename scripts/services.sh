# Sourced by scripts/run.sh and scripts/test.sh: makes sure Postgres, Redis
# and NATS (with JetStream) answer on this machine, installing them from
# Debian packages when missing. DATABASE_URL / REDIS_URL / NATS_URL, when
# set, point elsewhere and are used as they are.

# Bold only on a terminal: in a log file the escape codes are noise.
say() {
  if [ -t 2 ]; then
    printf '\033[1m[impact-in]\033[0m %s\n' "$*" >&2
  else
    printf '[impact-in] %s\n' "$*" >&2
  fi
}
die() { say "error: $*"; exit 1; }

# True when something accepts TCP connections on host:port.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for_port() {
  local host=$1 port=$2 what=$3
  for _ in $(seq 1 60); do
    port_open "$host" "$port" && return 0
    sleep 0.5
  done
  die "$what did not start listening on $host:$port"
}

apt_install() {
  [ "$(id -u)" = 0 ] || die "$* missing; run as root to install it, or set the URL of an existing server"
  command -v apt-get >/dev/null || die "$* missing and this is not a Debian-like system"
  say "installing $* from Debian packages"
  if [ -z "${APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    say "using DATABASE_URL from the environment"
    return
  fi
  if ! port_open 127.0.0.1 5432; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      apt_install postgresql
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
      || pg_ctlcluster "$version" main start
    wait_for_port 127.0.0.1 5432 PostgreSQL
    # Debian's default TCP auth wants a password: give the local superuser one
    # for development (ignored where the server trusts local connections).
    runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
  fi
  export DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/${IMPACT_IN_DB:-impact_in}"
}

ensure_redis() {
  if [ -n "${REDIS_URL:-}" ]; then
    say "using REDIS_URL from the environment"
    return
  fi
  if ! port_open 127.0.0.1 6379; then
    command -v redis-server >/dev/null || apt_install redis-server
    say "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/impact-in.log
    wait_for_port 127.0.0.1 6379 Redis
  fi
  export REDIS_URL="redis://127.0.0.1:6379"
}

# The nats-server binary (Debian's package), also for the tests that start
# and stop a server of their own (tests/it/bus_out.rs).
ensure_nats_server() {
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || apt_install nats-server
}

ensure_nats() {
  if [ -n "${NATS_URL:-}" ]; then
    say "using NATS_URL from the environment"
    return
  fi
  if ! port_open 127.0.0.1 4222; then
    ensure_nats_server
    local server store
    server=$(command -v nats-server || echo /usr/sbin/nats-server)
    store=${NATS_STORE_DIR:-/var/lib/nats/impact-in}
    say "starting NATS with JetStream (store in $store)"
    mkdir -p "$store"
    # Detached from this shell: it outlives run.sh, as Postgres and Redis do.
    nohup "$server" -a 127.0.0.1 -p 4222 -js -sd "$store" >>"$store/nats-server.log" 2>&1 &
    disown
    wait_for_port 127.0.0.1 4222 NATS
  fi
  export NATS_URL="nats://127.0.0.1:4222"
}

# promtool checks the alert rules (deploy/prometheus/alerts.yml).
ensure_promtool() {
  command -v promtool >/dev/null || apt_install --no-install-recommends prometheus
}

ensure_cargo() {
  if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null || die "cargo not found: install Rust 1.94 or newer (https://rustup.rs)"
}

# python3 with a working `venv` (Debian splits it into python3-venv): the
# contract check installs schemathesis into a virtual environment.
ensure_python_venv() {
  command -v python3 >/dev/null || apt_install python3 python3-venv
  local probe
  probe=$(mktemp -d)
  if ! python3 -m venv "$probe/venv" >/dev/null 2>&1; then
    apt_install python3-venv
    python3 -m venv "$probe/venv" >/dev/null || die "python3 -m venv still fails after installing python3-venv"
  fi
  rm -rf "$probe"
}

# node and npm for the browser check (tests/browser): Debian's are enough.
ensure_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs npm
  fi
}

# Debian's Chromium for the browser check; playwright-core drives it (its
# own browser download is never used).
ensure_chromium() {
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || apt_install chromium
}
