#!/usr/bin/env bash
# The contract check: starts the service once, against a fresh database and
# the provider sandbox on free ports, then
#   1. schemathesis (PyPI, pinned, in a virtual environment) over the whole
#      OpenAPI spec with a valid token: no 5xx, answers as the spec says
#      (the /webhooks/{provider} routes, which answer 401 to anything
#      unsigned, have their own tests);
#   2. /docs/ in headless Chromium with every request off 127.0.0.1 blocked:
#      Swagger UI renders the route list offline (tests/browser/docs.mjs);
#      then the delivery console (/console) end to end for a fresh company:
#      sign-in link, SLA widget, charts, filters, replays, read-only token,
#      axe-core, 360 px (tests/browser/console.mjs; CONSOLE_SCREENSHOTS=dir
#      saves the views of docs/console.md).
# Run by scripts/test.sh after cargo test; alone: bash scripts/contract-check.sh
# (CONTRACT_CHECK=schemathesis or =browser runs one part only).
# Fails on any finding; stops everything it started however it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

SCHEMATHESIS_VERSION=4.32.5
# Bounds: per example count and for the whole run (timeout kills it).
ST_MAX_EXAMPLES=${ST_MAX_EXAMPLES:-20}
ST_TIMEOUT_SECS=${ST_TIMEOUT_SECS:-240}
BROWSER_TIMEOUT_SECS=${BROWSER_TIMEOUT_SECS:-120}
parts=${CONTRACT_CHECK:-schemathesis,browser}

ensure_cargo
IMPACT_IN_DB=postgres ensure_postgres
ensure_redis
ensure_python_venv
[[ $parts != *browser* ]] || { ensure_node; ensure_chromium; }
command -v psql >/dev/null || apt_install postgresql-client

root=$PWD
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$root/$target ;; esac

# --- Tools --------------------------------------------------------------------
# The virtual environment is kept between runs, one per pinned version.
venv=$target/contract-check/schemathesis-$SCHEMATHESIS_VERSION
if [[ $parts == *schemathesis* ]] && ! "$venv/bin/st" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
if [[ $parts == *browser* ]]; then
  say "npm ci (tests/browser: playwright-core, no browser download)"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund)
fi

# The test build's binary (cargo test built it already: seconds).
cargo build --locked --quiet
bin=$target/debug/impact-in

# --- Service ------------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=${CONTRACT_PORT:-$(free_port)}
url=http://127.0.0.1:$port
db=impact_in_contract_$$
admin_url=$DATABASE_URL
db_url=${DATABASE_URL%/*}/$db

work=$(mktemp -d)
declare -A started=()
cleanup() {
  local status=$? pid
  for pid in "${!started[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${!started[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 \
    || say "warning: could not drop database $db"
  if [ "$status" != 0 ]; then
    for log in "$work"/*.log; do
      [ -s "$log" ] || continue
      say "last lines of $(basename "$log"):"
      tail -n 40 "$log" >&2
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Polls until host:port accepts connections; fails as soon as pid has exited.
wait_listening() {
  local pid=$1 port=$2
  for _ in $(seq 1 300); do
    port_open 127.0.0.1 "$port" && return 0
    kill -0 "$pid" 2>/dev/null || die "${started[$pid]} exited before listening on port $port"
    sleep 0.1
  done
  die "${started[$pid]} did not listen on port $port within 30 s"
}

# The binary reads .env from its working directory and the ones above: run
# it from an empty one, so that a developer's .env does not leak in.
cd "$work"
export HOST=127.0.0.1 PORT_IMPACT_IN=$port DATABASE_URL=$db_url \
  REDIS_KEY_PREFIX="impact-in-contract:$$:" LOG_FORMAT=json LOG_LEVEL=info \
  JWT_SECRET=$(head -c 32 /dev/urandom | base64) \
  TOKEN_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64) \
  PII_HASH_KEY=$(head -c 32 /dev/urandom | base64) INGEST_SYNC_WAIT_SECS=0 \
  OPS_API_KEYS="ops-$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"

# The sandbox on a free port: its stdout is the variables that point the
# service at it (VAR=value lines); its webhooks go to the service.
"$bin" sandbox --port "${CONTRACT_SANDBOX_PORT:-0}" --webhook-url "$url/webhooks" \
  > sandbox.env 2> sandbox.log &
started[$!]="the provider sandbox"
sandbox=$!
for _ in $(seq 1 300); do
  # The last variable it prints.
  grep -q '^PAGERDUTY_EVENTS_URL=' sandbox.env 2>/dev/null && break
  kill -0 "$sandbox" 2>/dev/null || die "the provider sandbox exited"
  sleep 0.1
done
grep -q '^WORKDAY_WEBHOOK_SECRET=' sandbox.env || die "the provider sandbox printed no variables"
while IFS= read -r line; do
  [[ ${line%%=*} =~ ^[A-Z_]+$ ]] && export "$line"
done < sandbox.env

"$bin" migrate 2> migrate.log
"$bin" serve 2> service.log &
started[$!]="impact-in serve"
wait_listening $! "$port"
# Readiness: migrated, Postgres answers, start-up done (no curl needed).
ready() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$url/health/ready" 2>/dev/null
}
for _ in $(seq 1 100); do ready && break; sleep 0.2; done
ready || die "$url/health/ready did not answer 200"
say "service on $url (database $db), sandbox on ${BENEVITY_API_URL:-?}"

# Every role, for the demo company of the README and the sandbox.
token=$("$bin" token --company 00000000-0000-4000-8000-000000000001 \
  --roles ADMIN_CONSOLE,MANAGE_INTEGRATIONS --ttl 1h --subject contract-check)

# --- 1. schemathesis ----------------------------------------------------------
# Twice: with the token (a company's caller: random companyIds get 403),
# then with an ops key (every company: creates, replays and reads reach the
# database and the workers). One time limit for both.
run_schemathesis() {
  local label=$1 bearer=$2 budget=$(( ST_TIMEOUT_SECS - (SECONDS - st_started) )) status=0
  [ "$budget" -gt 0 ] || die "schemathesis: no time left of ${ST_TIMEOUT_SECS}s for the $label run"
  say "schemathesis $SCHEMATHESIS_VERSION over $url/openapi.json as $label"
  timeout --kill-after=10 "$budget" "$venv/bin/st" --config-file "$root/tests/contract/schemathesis.toml" \
    run "$url/openapi.json" \
    --header "Authorization: Bearer $bearer" \
    --exclude-path-regex '^/webhooks/\{' \
    --checks all \
    --max-examples "$ST_MAX_EXAMPLES" \
    --seed "${ST_SEED:-1}" \
    --generation-database none \
    --workers 2 \
    --request-timeout 10 \
    --no-color \
    || status=$?
  case $status in
    0) ;;
    124 | 137) die "schemathesis ($label): did not finish within ${ST_TIMEOUT_SECS}s (both runs)" ;;
    *) die "schemathesis ($label): findings above (exit $status)" ;;
  esac
}

st_result="skipped"
if [[ $parts == *schemathesis* ]]; then
  st_started=$SECONDS
  run_schemathesis "a company's token" "$token"
  run_schemathesis "an ops key" "$OPS_API_KEYS"
  st_result="passed in $((SECONDS - st_started))s"
fi

# --- 2. /docs in headless Chromium --------------------------------------------
browser_result="skipped"
if [[ $parts == *browser* ]]; then
  say "/docs/ in headless Chromium, offline"
  started_at=$SECONDS
  browser_status=0
  DOCS_URL=$url/docs/ CHROMIUM=${CHROMIUM:-/usr/bin/chromium} \
    timeout --kill-after=10 "$BROWSER_TIMEOUT_SECS" node "$root/tests/browser/docs.mjs" \
    || browser_status=$?
  browser_secs=$((SECONDS - started_at))
  case $browser_status in
    0) ;;
    124 | 137) die "browser check: did not finish within ${BROWSER_TIMEOUT_SECS}s" ;;
    *) die "browser check: failed (exit $browser_status, ${browser_secs}s)" ;;
  esac

  say "/console in headless Chromium: a fresh company's deliveries, replays, axe-core"
  console_company=$(python3 -c 'import uuid; print(uuid.uuid4())')
  sandbox_origin=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(f"{p.scheme}://{p.netloc}")' "$BENEVITY_API_URL")
  console_status=0
  BASE_URL=$url COMPANY=$console_company SANDBOX_URL=$sandbox_origin SERVICE_LOG=$work/service.log \
    TOKEN=$("$bin" token --company "$console_company" --roles ADMIN_CONSOLE,MANAGE_INTEGRATIONS --ttl 1h --subject console-check) \
    READONLY_TOKEN=$("$bin" token --company "$console_company" --roles ADMIN_CONSOLE --ttl 1h --subject console-reader) \
    SCREENSHOTS=${CONSOLE_SCREENSHOTS:-} CHROMIUM=${CHROMIUM:-/usr/bin/chromium} \
    timeout --kill-after=10 "$BROWSER_TIMEOUT_SECS" node "$root/tests/browser/console.mjs" \
    || console_status=$?
  browser_secs=$((SECONDS - started_at))
  case $console_status in
    0) browser_result="passed in ${browser_secs}s" ;;
    124 | 137) die "console check: did not finish within ${BROWSER_TIMEOUT_SECS}s" ;;
    *) die "console check: failed (exit $console_status)" ;;
  esac
fi

echo "contract check: schemathesis $st_result; /docs and /console in Chromium $browser_result"
