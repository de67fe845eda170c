#!/usr/bin/env bash
# The database floor for debits on this machine: pgbench calls the debit function of schema.sql
# straight from 32 clients, spread over the accounts and then all on one account. Tally's debit
# rate means something only beside this figure measured in the same run: the machine is shared.
# Usage: bench/floor/floor.sh [clients] [seconds] [database-url] [accounts]
# Prints one `result` line per workload, in the key=value form of examples/bench_load.rs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
clients="${1:-32}"
seconds="${2:-10}"
db="${3:-postgres://postgres@127.0.0.1:5432/postgres}"
accounts="${4:-10000}"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

psql "$db" -q -v ON_ERROR_STOP=1 -v accounts="$accounts" -f "$here/schema.sql" >/dev/null
for workload in spread hot; do
    rm -f "$logs"/*
    # -l logs each transaction's latency (3rd field, microseconds) for the percentiles.
    out="$(pgbench "$db" -n -M prepared -c "$clients" -j 2 -T "$seconds" -D accounts="$accounts" \
        -l --log-prefix="$logs/tx" -f "$here/$workload.pgb" 2>&1)" || {
        echo "$out" >&2
        exit 1
    }
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")"
    failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")"
    # shellcheck disable=SC2016 # awk's own $ fields
    cat "$logs"/tx* | awk '{ print $3 }' | sort -n | awk -v tps="$tps" -v failed="${failed:-0}" \
        -v c="$clients" -v s="$seconds" -v u="$([[ $workload == hot ]] && echo 1 || echo "$accounts")" \
        -v w="$workload" '
        { lat[NR] = $1 }
        END {
            p50 = lat[int(NR * 0.50 + 0.999999)]; p99 = lat[int(NR * 0.99 + 0.999999)]
            printf "result mode=floor-%s clients=%s users=%s seconds=%s ok=%d errors=%d rate=%.0f p50_ms=%.2f p99_ms=%.2f\n",
                w, c, u, s, NR, failed, tps, p50 / 1000, p99 / 1000
        }'
done
