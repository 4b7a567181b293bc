#!/usr/bin/env bash
# CPU of a host running at a steady, modest rate (the simulator paced at RATE events/s), per
# thread and per event, read from /proc over a window after a warm-up. Figures are printed,
# never asserted.
#
#   plugins/build.sh && tests/low_rate_cpu.sh [RATE] [SECONDS]     (default 2000 events/s, 20 s)
#
# Environment: HOST_BIN (default: this checkout's release build, built first).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rate="${1:-2000}"
window="${2:-20}"
warmup=15
if [[ -z "${HOST_BIN:-}" ]]; then
    cargo build --release -q -p host # the build of this checkout, not whatever was built last
fi
bin="${HOST_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/host}"
data="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT

"$bin" run --plugins plugins --data-dir "$data" --rate "$rate" --quiet --http off \
    --duration "$((warmup + window + 30))s" > "$data/host.log" 2>&1 &
pid=$!
sleep "$warmup"

# thread id, name, user+system ticks
threads() {
    for t in /proc/"$pid"/task/*; do
        printf '%s %s %s\n' "${t##*/}" "$(tr ' ' _ < "$t/comm")" \
            "$(awk '{print $14 + $15}' "$t/stat")"
    done | sort
}
before="$(threads)"
sleep "$window"
after="$(threads)"
hz="$(getconf CLK_TCK)"
events=$((rate * window))

echo "host run at $rate events/s, ${window} s after ${warmup} s of warm-up ($events events)"
join <(echo "$before") <(echo "$after") | awk -v hz="$hz" -v n="$events" -v w="$window" '
    { name[$2] += ($5 - $3) / hz }
    END {
        for (t in name) { total += name[t]
            if (name[t] > 0) printf "  %-18s %6.2f s  %6.1f us/event  %5.1f%% of a core\n", t, name[t], 1e6 * name[t] / n, 100 * name[t] / w }
        printf "  %-18s %6.2f s  %6.1f us/event  %5.1f%% of a core\n", "all_threads", total, 1e6 * total / n, 100 * total / w
    }' | sort -k2 -n
