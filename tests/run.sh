#!/usr/bin/env bash
# The test command: build every plugin and test fixture into components, then run all tests
# (SDK and plugin unit tests natively; harness, isolation, hot-swap and end-to-end tests against
# the built components and the real services). Arguments go to `cargo test` (e.g. `--test kafka`,
# or `-- name_filter`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
plugins/build.sh --fixtures
# Real services, installed on first use. The Kafka, S3 and demo tests start a tansu and an s3s-fs
# of their own; the browser test drives headless Chromium with chromedriver (Debian packages).
# ClickHouse is shared: started on its default port and left running.
tests/services/install.sh kafka s3 browser
tests/services/start.sh clickhouse
# Everything runs here: the service tests (ignored by a plain `cargo test`) too, and a missing
# component fails its test instead of skipping it.
export SHELFSTREAM_TEST_ALL=1
args=("$@")
if [[ " ${args[*]} " == *" -- "* ]]; then
    for i in "${!args[@]}"; do
        if [[ ${args[$i]} == "--" ]]; then
            args=("${args[@]:0:$((i + 1))}" --include-ignored "${args[@]:$((i + 1))}")
            break
        fi
    done
else
    args+=(-- --include-ignored)
fi
cargo test --release --workspace "${args[@]}"
