#!/usr/bin/env bash
# The admin console's browser test: builds Tally, starts it on a fresh SQLite database, and
# drives /admin in headless Chromium (console.test.mjs). Screenshots land in
# target/browser-screenshots/. Needs Node 20+ and Chromium (`apt-get install chromium`).
# Run from anywhere: `bash tests/browser/run.sh`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

cargo build --quiet --bin tally
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
shots="$repo/target/browser-screenshots"
mkdir -p "$shots"

(cd "$here" && npm ci --no-audit --no-fund --silent)

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
key="tally_sk_browser_test_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
DATABASE_URL="sqlite://$work/tally.db?mode=rwc" TALLY_LISTEN="127.0.0.1:$port" \
    TALLY_ADMIN_API_KEY="$key" RUST_LOG=warn \
    "$target_dir/debug/tally" >"$work/tally.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done

TALLY_URL="http://127.0.0.1:$port" TALLY_KEY="$key" SCREENSHOT_DIR="$shots" \
    CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser)}" \
    node "$here/console.test.mjs" || { echo "--- server log"; tail -n 50 "$work/tally.log"; exit 1; }
