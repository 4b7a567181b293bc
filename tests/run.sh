#!/usr/bin/env bash
# The test command: build every plugin and test fixture into components, then run all tests
# (SDK and plugin unit tests natively; harness, isolation, hot-swap and end-to-end tests against
# the built components).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
plugins/build.sh --fixtures
# Real services (installed on first use), left running: ClickHouse, tansu and s3s-fs on their
# default ports for the demo test; the Kafka tests start their own broker and S3 server too.
tests/services/start.sh
cargo test --release --workspace "$@"
