#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs or starts what the tests need (RabbitMQ on
# 127.0.0.1, grpcurl, hadolint, kubernetes-validate; each skipped when present), builds both
# binaries, and runs every test. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

ensure_tools
ensure_rabbitmq

export DWELL_TEST_AMQP_URL="${DWELL_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export DWELL_TEST_RABBITMQ_MGMT="${DWELL_TEST_RABBITMQ_MGMT:-http://127.0.0.1:15672}"
# Tests that need a broker fail (instead of skipping) when it is missing.
export DWELL_REQUIRE_SERVICES=1

echo "==> cargo build --workspace --bins"
cargo build --workspace --bins
echo "==> cargo test --workspace"
cargo test --workspace --no-fail-fast -- --test-threads="${DWELL_TEST_THREADS:-2}"
if [ -x manifests/test.sh ]; then
  echo "==> manifests/test.sh"
  manifests/test.sh
fi
echo "==> all tests passed"
