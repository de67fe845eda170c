#!/usr/bin/env bash
# Benchmark (not a test): N live-balance subscriptions against a release build of Tally.
# Usage: bench/subscriptions.sh [N] [DATABASE_URL]
#   N             subscriptions (default 10000)
#   DATABASE_URL  default: a fresh SQLite file; e.g. postgres://postgres@127.0.0.1:5432/tally_bench
# Prints memory per idle subscription, push latency p50/p99 and debit rates.
#   BENCH_TALLY_BIN=path  measure this tally binary instead of the one built here (before/after)
#   BENCH_SUB_ARGS="..."  more flags for examples/bench_subscriptions (--rounds, --debits, --concurrency)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
work="$(mktemp -d)"
DATABASE_URL="${2:-sqlite://$work/bench.db?mode=rwc}"
KEY="tally_sk_bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PORT="${PORT:-18080}"

cargo build --release --quiet --bin tally --example bench_subscriptions
bin="${CARGO_TARGET_DIR:-target}/release"
tally="${BENCH_TALLY_BIN:-$bin/tally}"
# Each subscription is a socket on both sides.
ulimit -n "$(ulimit -Hn)"

DATABASE_URL="$DATABASE_URL" TALLY_LISTEN="127.0.0.1:$PORT" TALLY_ADMIN_API_KEY="$KEY" \
    RUST_LOG=warn "$tally" serve &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
    sleep 0.1
done

echo "Tally $(git rev-parse --short HEAD 2>/dev/null || echo '?') on ${DATABASE_URL%%\?*}, $(nproc) cores"
# BENCH_SUB_ARGS is split into flags on purpose.
# shellcheck disable=SC2086
"$bin/examples/bench_subscriptions" \
    --url "http://127.0.0.1:$PORT" --key "$KEY" --pid "$pid" --subscriptions "$N" ${BENCH_SUB_ARGS:-}
