#!/usr/bin/env bash
# Start, on loopback and without Docker, the services shelfstream talks to:
#   Kafka protocol (tansu)   127.0.0.1:9092
#   ClickHouse HTTP / native 127.0.0.1:8123 / 9000
#   S3 (s3s-fs)              http://127.0.0.1:9010  (access key minioadmin / minioadmin)
# Data and logs live under $SHELFSTREAM_SERVICES_DIR (default ~/.cache/shelfstream/services).
# Idempotent: a service already answering is left alone. Usage: start.sh [kafka|clickhouse|s3 ...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${SHELFSTREAM_SERVICES_DIR:-$HOME/.cache/shelfstream/services}"
mkdir -p "$dir"
log() { printf '[services/start] %s\n' "$*" >&2; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port name log
    for _ in $(seq 1 120); do
        if listening "$1"; then return 0; fi
        sleep 0.5
    done
    log "$2 did not start on port $1; see $3"
    tail -n 30 "$3" >&2 || true
    return 1
}

start_clickhouse() {
    local d="$dir/clickhouse"
    if listening 8123; then log "clickhouse already listening on 127.0.0.1:8123"; return; fi
    mkdir -p "$d/log"
    # Services run from their own folder, never from the caller's (a CI clone is deleted later,
    # and a process whose working directory is gone fails on relative paths).
    (cd "$d" && exec nohup "$here/clickhouse-instance.sh" "$d" 8123 9000 9009 > "$d/log/stdout.log" 2>&1) &
    echo $! > "$d/pid"
    wait_port 8123 clickhouse "$d/log/clickhouse-server.err.log"
    for _ in $(seq 1 60); do
        if clickhouse-client --query "SELECT 1" >/dev/null 2>&1; then break; fi
        sleep 0.5
    done
    log "clickhouse: 127.0.0.1:8123 (HTTP), :9000 (native); logs $d/log/"
}

start_kafka() {
    local d="$dir/kafka"
    if listening 9092; then log "kafka (tansu) already listening on 127.0.0.1:9092"; return; fi
    mkdir -p "$d"
    # tansu resolves sqlite:// paths against its working directory (an absolute path included).
    (cd "$d" && exec nohup tansu broker --listener-url tcp://127.0.0.1:9092 \
        --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine "sqlite://tansu.db" \
        > "$d/tansu.log" 2>&1) &
    echo $! > "$d/pid"
    wait_port 9092 tansu "$d/tansu.log"
    log "kafka (tansu): 127.0.0.1:9092; log $d/tansu.log"
}

start_s3() {
    local d="$dir/s3"
    mkdir -p "$d/data/retail-data"   # a bucket is a folder
    if listening 9010; then log "s3 (s3s-fs) already listening on 127.0.0.1:9010"; return; fi
    (cd "$d" && exec nohup s3s-fs --host 127.0.0.1 --port 9010 --access-key minioadmin --secret-key minioadmin "$d/data" > "$d/s3s-fs.log" 2>&1) &
    echo $! > "$d/pid"
    wait_port 9010 s3s-fs "$d/s3s-fs.log"
    log "s3 (s3s-fs): http://127.0.0.1:9010 (minioadmin/minioadmin), bucket retail-data in $d/data; log $d/s3s-fs.log"
}

services=("$@")
((${#services[@]})) || services=(clickhouse kafka s3)
[[ -n "${SHELFSTREAM_SKIP_INSTALL:-}" ]] || "$here/install.sh" "${services[@]}"
for s in "${services[@]}"; do
    case "$s" in
        clickhouse) start_clickhouse ;;
        kafka) start_kafka ;;
        s3) start_s3 ;;
        *) log "unknown service $s (clickhouse, kafka, s3)"; exit 2 ;;
    esac
done
