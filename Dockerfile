# syntax=docker/dockerfile:1

# --- Build ------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /build

# Dependencies first, against stub sources: this layer is rebuilt only when
# Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The service itself. Migrations are compiled into the binary (sqlx::migrate!).
# COPY keeps the files' original timestamps, which can be older than the stub
# build; touch them so cargo rebuilds the crate.
COPY migrations ./migrations
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked

# --- Runtime ----------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin impact

COPY --from=builder /build/target/release/impact-in /usr/local/bin/impact-in

ENV PORT_IMPACT_IN=3007 \
    LOG_FORMAT=json
EXPOSE 3007

USER impact
# No HEALTHCHECK: Kubernetes probes /health/startup, /health/liveness and
# /health/readiness (docs/runbook.md).
ENTRYPOINT ["impact-in"]
CMD ["serve"]
