#!/usr/bin/env bash
# Benchmark (not a test): Tally's debit and balance rates on PostgreSQL and SQLite, beside what
# the database alone does (bench/floor) and what a bare axum + sqlx endpoint does
# (examples/bare_balance.rs), all measured in this one run on this machine. Figures are printed,
# never asserted. README.md ("Benchmarks") says how to read them.
#
# Usage: bench/ledger.sh [--smoke] [--seconds N] [--clients N] [--users N] [--pg URL] [--only postgres|sqlite]
#   --smoke        tiny and quick (1 s per workload, 200 users, 8 clients, debug build): proves the
#                  benchmark still runs; its figures mean nothing. Also BENCH_SMOKE=1.
#   --seconds N    measured seconds per workload, after a 1 s warm-up (BENCH_SECONDS, default 10)
#   --clients N    concurrent HTTP connections (BENCH_CLIENTS, default 32)
#   --users N      end users seeded, each with two grants (BENCH_USERS, default 10000)
#   --pg URL       an empty PostgreSQL database to use as is (BENCH_PG_URL); default: a fresh
#                  database tally_bench on postgres://postgres@127.0.0.1:5432, dropped at the end
#   --only DB      run one database only (BENCH_ONLY)
#   BENCH_TALLY_BIN=path  measure this tally binary instead of the one built here (say, a build of
#                  an older commit, for before/after figures beside the same floor); for a build
#                  from before application-chosen end-user ids, add BENCH_END_USER_ID_TYPE=UUID
set -euo pipefail
cd "$(dirname "$0")/.."

smoke="${BENCH_SMOKE:-0}"
seconds="${BENCH_SECONDS:-}"
clients="${BENCH_CLIENTS:-}"
users="${BENCH_USERS:-}"
pg_url="${BENCH_PG_URL:-}"
only="${BENCH_ONLY:-}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --smoke) smoke=1 ;;
        --seconds) seconds="$2"; shift ;;
        --clients) clients="$2"; shift ;;
        --users) users="$2"; shift ;;
        --pg) pg_url="$2"; shift ;;
        --only) only="$2"; shift ;;
        *) echo "unknown argument $1 (see the head of $0)" >&2; exit 2 ;;
    esac
    shift
done
if [[ "$smoke" == 1 ]]; then
    seconds="${seconds:-1}" clients="${clients:-8}" users="${users:-200}" warmup=0.2 profile=debug
else
    seconds="${seconds:-10}" clients="${clients:-32}" users="${users:-10000}" warmup=1 profile=release
fi
# Tally's default pool; the bare endpoint gets the same.
pool=16
key="tally_sk_bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
work="$(mktemp -d)"
pg_server="postgres://postgres@127.0.0.1:5432"
created_db=""
server=""
# psql's notices ("does not exist, skipping") are noise here.
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

cleanup() {
    if [[ -n "$server" ]]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    if [[ -n "$created_db" ]]; then
        psql "$pg_server/postgres" -qc "drop database if exists $created_db with (force)" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The smoke run takes the debug build that `cargo test` leaves behind (nothing to build then).
if [[ "$profile" == release ]]; then
    cargo build --release --quiet --bin tally --example bench_load --example bare_balance
else
    cargo build --quiet --bin tally --example bench_load --example bare_balance
fi
bin="${CARGO_TARGET_DIR:-target}/$profile"
tally="${BENCH_TALLY_BIN:-$bin/tally}"

# A port nothing listens on, so that readiness is never answered by someone else's server.
port=""
for p in $(seq 18090 18189); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        port="$p"
        break
    fi
done
[[ -n "$port" ]] || { echo "no free port in 18090-18189" >&2; exit 1; }

# Starts $1 (Tally or the bare endpoint) on database $2 and waits until it answers.
start() {
    DATABASE_URL="$2" TALLY_LISTEN="127.0.0.1:$port" TALLY_ADMIN_API_KEY="$key" \
        TALLY_DB_MAX_CONNECTIONS="$pool" RUST_LOG=warn "$1" serve &
    server=$!
    for _ in $(seq 1 300); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
        kill -0 "$server" 2>/dev/null || { echo "$1 exited at start-up" >&2; exit 1; }
        sleep 0.1
    done
    echo "$1 did not become ready" >&2
    exit 1
}

stop() {
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
}

declare -A results
# Runs the load generator; keeps its `result` line under name $1 and prints it.
load() {
    local name="$1"
    shift
    local line
    line="$(timeout 900 "$bin/examples/bench_load" --url "http://127.0.0.1:$port/graphql" \
        --key "$key" --server-pid "$server" --clients "$clients" --users "$users" \
        --seconds "$seconds" --warmup "$warmup" "$@")"
    results[$name]="$line"
    printf '  %-18s %s\n' "$name" "${line#result }"
}

field() { # field NAME KEY: one figure of a kept result line
    sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"${results[$1]:-}"
}

tally_workloads() { # $1: postgres or sqlite
    load "$1-seed" --mode seed
    # As the floor does after its own seeding (bench/floor/schema.sql): a database in service
    # has statistics, a table filled seconds ago has none until autovacuum's next pass, and a
    # plan PostgreSQL caches on a write lane's connection without them can be a sequential scan.
    if [[ "$1" == postgres ]]; then
        psql "$pg_url" -qc analyze
    fi
    load "$1-spread" --mode debit
    load "$1-hot" --mode debit --hot
    load "$1-single" --mode debit --clients 1
    load "$1-balance" --mode balance
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "Tally $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($profile build), $(nproc) cores," \
    "$clients clients, ${seconds} s per workload, $users end users; load average $load_before"

if [[ "$only" != sqlite ]]; then
    if [[ -z "$pg_url" ]]; then
        # Smoke runs (CI) may overlap on one machine: each gets a database of its own.
        db_name=tally_bench
        [[ "$smoke" == 1 ]] && db_name="tally_bench_smoke_$$"
        psql "$pg_server/postgres" -qc "drop database if exists $db_name with (force)" \
            -c "create database $db_name" >/dev/null
        created_db="$db_name"
        pg_url="$pg_server/$db_name"
    fi
    echo "PostgreSQL (${pg_url%%\?*}):"
    # The floor lives in its own schema of the same database, beside Tally's tables.
    floor="$(bench/floor/floor.sh "$clients" "$seconds" "$pg_url" "$users")"
    while read -r line; do
        name="postgres-${line#*mode=}"
        name="${name%% *}"
        results[$name]="$line"
        printf '  %-18s %s\n' "$name" "${line#result }"
    done <<<"$floor"
    start "$tally" "$pg_url"
    tally_workloads postgres
    stop
    start "$bin/examples/bare_balance" "$pg_url"
    load postgres-bare --mode balance
    stop
    psql "$pg_url" -qc "drop schema floor cascade" 2>/dev/null || true
fi

if [[ "$only" != postgres ]]; then
    sqlite_url="sqlite://$work/bench.db?mode=rwc"
    echo "SQLite ($work/bench.db):"
    start "$tally" "$sqlite_url"
    tally_workloads sqlite
    stop
    start "$bin/examples/bare_balance" "$sqlite_url"
    load sqlite-bare --mode balance
    stop
fi

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg) (before: $load_before)"
[[ "$smoke" == 1 ]] && echo "(smoke run: these figures mean nothing)"

# The summary, as a Markdown table: rate, p50/p99 in ms, errors; ratio = Tally ÷ comparator.
cell() { # cell NAME
    [[ -n "${results[$1]:-}" ]] || { printf '–'; return; }
    local errors
    errors="$(field "$1" errors)"
    printf '%s/s, p50 %s, p99 %s' "$(field "$1" rate)" "$(field "$1" p50_ms)" "$(field "$1" p99_ms)"
    [[ "$errors" == 0 ]] || printf ', **%s errors**' "$errors"
}
ratio() { # ratio TALLY COMPARATOR
    local a b
    a="$(field "$1" rate)"
    b="$(field "$2" rate)"
    [[ -n "$a" && -n "$b" ]] || { printf '–'; return; }
    awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else printf "–" }'
}
row() { # row LABEL TALLY COMPARATOR COMPARATOR-LABEL
    local comparator='–' r='–'
    if [[ -n "${3:-}" ]]; then
        comparator="$4: $(cell "$3")"
        r="$(ratio "$2" "$3")"
    fi
    printf '| %s | %s | %s | %s |\n' "$1" "$(cell "$2")" "$comparator" "$r"
}
echo
echo "| workload ($clients clients unless said) | Tally | comparator, same run | ratio |"
echo "| --- | --- | --- | --- |"
for db in postgres sqlite; do
    [[ -n "${results[$db-spread]:-}" ]] || continue
    name=PostgreSQL
    [[ "$db" == sqlite ]] && name=SQLite
    if [[ "$db" == postgres ]]; then
        row "$name debits, spread over $users users" "$db-spread" "$db-floor-spread" "floor"
        row "$name debits, one hot user" "$db-hot" "$db-floor-hot" "floor"
    else
        row "$name debits, spread over $users users" "$db-spread"
        row "$name debits, one hot user" "$db-hot"
    fi
    row "$name debits, 1 client alone" "$db-single"
    row "$name balance reads" "$db-balance" "$db-bare" "bare axum + sqlx"
    row "$name addCredits while seeding" "$db-seed"
done
