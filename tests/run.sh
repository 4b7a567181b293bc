#!/usr/bin/env bash
# The test command: build every plugin and test fixture into components, then run all tests
# (SDK and plugin unit tests natively; harness, isolation, hot-swap and end-to-end tests against
# the built components).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
plugins/build.sh --fixtures
# Real services for the service tests (installed on first use): ClickHouse is started and left
# running; the Kafka test starts its own tansu broker and s3s-fs server.
tests/services/start.sh clickhouse
tests/services/install.sh kafka s3
cargo test --release --workspace "$@"
