#!/usr/bin/env bash
# Install (first run only) what the real-service tests and the demo need, without Docker:
#   - ClickHouse server and client (Debian package; 18.16 on bookworm)
#   - tansu, a Kafka-protocol broker in Rust (crates.io), with storage engines
#   - s3s-fs, an S3-compatible server over a folder (crates.io)
#   - cmake and the C libraries librdkafka's build needs (OpenSSL: SASL/SCRAM and TLS)
#   - Chromium and chromedriver (Debian packages), for the live page's browser test
# Idempotent: anything already present is skipped. Usage: install.sh [clickhouse|kafka|s3|browser ...]
set -euo pipefail
wanted=" ${*:-clickhouse kafka s3 browser} "
log() { printf '[services/install] %s\n' "$*" >&2; }
if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi

need_apt=()
if [[ $wanted == *" clickhouse "* ]]; then
    command -v clickhouse-server >/dev/null || need_apt+=(clickhouse-server clickhouse-client)
fi
if [[ $wanted == *" kafka "* ]]; then
    command -v cmake >/dev/null || need_apt+=(cmake)
    for pkg in libcurl4-openssl-dev libssl-dev pkg-config zlib1g-dev; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
    done
fi
if [[ $wanted == *" browser "* ]]; then
    command -v chromium >/dev/null || need_apt+=(chromium)
    command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
fi
if ((${#need_apt[@]})); then
    log "apt-get install ${need_apt[*]}"
    "${sudo[@]}" apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${need_apt[@]}" >&2
fi

if [[ $wanted == *" kafka "* ]] && ! command -v tansu >/dev/null; then
    log "cargo install tansu (Kafka-protocol broker; about 15 minutes the first time)"
    cargo install tansu --locked --features dynostore,libsql >&2
fi
if [[ $wanted == *" s3 "* ]] && ! command -v s3s-fs >/dev/null; then
    log "cargo install s3s-fs (S3 server; about 5 minutes the first time)"
    cargo install s3s-fs@0.14.1 --locked --features binary >&2
fi
log "ok:${wanted% }"
