#!/usr/bin/env bash
# The long chaos soak: 20 kill -9 of the host, 5 broker restarts, 5 ClickHouse and 5 object-store
# outages of 30 s, in a random order from a printed seed, with traffic the whole time; checks
# that nothing is lost or doubled and prints one line of figures (tests/soak.rs; tests/run.sh
# runs a short version). Usage: tests/soak.sh [SEED]. The counts can be changed through the
# environment (SOAK_KILLS, SOAK_BROKER_RESTARTS, SOAK_CLICKHOUSE_OUTAGES, SOAK_S3_OUTAGES,
# SOAK_OUTAGE_SECS, SOAK_RATE).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
plugins/build.sh
tests/services/install.sh clickhouse kafka s3
export SOAK_KILLS="${SOAK_KILLS:-20}" SOAK_BROKER_RESTARTS="${SOAK_BROKER_RESTARTS:-5}"
export SOAK_CLICKHOUSE_OUTAGES="${SOAK_CLICKHOUSE_OUTAGES:-5}" SOAK_S3_OUTAGES="${SOAK_S3_OUTAGES:-5}"
export SOAK_OUTAGE_SECS="${SOAK_OUTAGE_SECS:-30}"
if [[ -n "${1:-}" ]]; then export SOAK_SEED="$1"; fi
export SHELFSTREAM_TEST_ALL=1
log="${TMPDIR:-/tmp}/shelfstream-soak.log"
echo "soak running (about 15-20 minutes); output in $log" >&2
if cargo test --release -p host --test soak -- --include-ignored --nocapture > "$log" 2>&1; then
    grep -E '^soak ' "$log"
else
    grep -E '^soak |panicked|^test result' -A8 "$log" >&2 || true
    echo "the soak failed; full output in $log" >&2
    exit 1
fi
