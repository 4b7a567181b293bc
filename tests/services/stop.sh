#!/usr/bin/env bash
# Stop services started by start.sh. Usage: stop.sh [kafka|clickhouse|s3 ...] (default: all)
set -euo pipefail
dir="${SHELFSTREAM_SERVICES_DIR:-$HOME/.cache/shelfstream/services}"
services=("$@")
((${#services[@]})) || services=(clickhouse kafka s3)
for s in "${services[@]}"; do
    pidfile="$dir/$s/pid"
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")"
        for _ in $(seq 1 40); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$(cat "$pidfile")" 2>/dev/null || true
        printf '[services/stop] stopped %s\n' "$s" >&2
    fi
    rm -f "$pidfile"
done
