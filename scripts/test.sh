#!/usr/bin/env bash
# The whole check, as CI runs it: formatting, lints, every test against
# real Postgres, Redis and NATS JetStream (installed and started when missing), then the
# contract check (scripts/contract-check.sh: schemathesis, /docs in Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

ensure_cargo
# Tests create a fresh database per test next to this one.
IMPACT_IN_DB=postgres ensure_postgres
ensure_redis
# tests/it/bus.rs consumes from a real JetStream; tests/it/bus_out.rs also
# runs nats-server itself.
ensure_nats
ensure_nats_server

ensure_promtool

say "promtool check rules"
promtool check rules deploy/prometheus/alerts.yml
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --locked --all-targets --quiet -- -D warnings
say "cargo test"
# --all-targets: unit and integration tests (no doctests: the crate has none).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked --no-fail-fast --all-targets 2>&1 | tee "$log"
# The running service against its OpenAPI contract (schemathesis) and
# /docs in headless Chromium, offline: about a minute.
say "contract check"
bash scripts/contract-check.sh
# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
