#!/usr/bin/env bash
# The test command: build every plugin and test fixture into components, then run all tests
# (SDK and plugin unit tests natively; harness, isolation, hot-swap and end-to-end tests against
# the built components and the real services). Arguments go to `cargo test` (e.g. `--test kafka`,
# or `-- name_filter`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
plugins/build.sh --fixtures
# Real services (installed on first use), left running: ClickHouse, tansu and s3s-fs on their
# default ports for the demo test; the Kafka tests start their own broker and S3 server too.
tests/services/start.sh
# Headless Chromium and chromedriver for the live page's browser test (Debian packages).
tests/services/install.sh browser
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
