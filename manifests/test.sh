#!/usr/bin/env bash
# Tests for the Kubernetes manifests and images, offline: renders every kustomization with
# `kubectl kustomize` (openssl certificates generated into a temporary copy), validates every object
# against the Kubernetes OpenAPI schemas of several minor versions (kubernetes-validate, strict),
# lints the Dockerfiles with hadolint, runs the semantic checks in manifests/tests/, and runs the
# real aggregator (127.0.0.1 only) with the shipped env, rules and gen-certs.sh certificate to answer
# every shipped HPA's request through kubectl after a grpcurl push.
# Installs nothing: scripts/lib/services.sh `ensure_tools` provides hadolint, kubernetes-validate and
# grpcurl, and scripts/test.sh builds target/debug/dwell-{aggregator,sidecar} first.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
for tool in kubectl openssl hadolint grpcurl git python3; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
python3 -c 'import yaml, kubernetes_validate' 2>/dev/null || missing+=("python: kubernetes-validate/PyYAML")
# Where cargo put the debug binaries (honours CARGO_TARGET_DIR, as CI may set it).
export DWELL_BIN_DIR="${DWELL_BIN_DIR:-$(cd .. && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug}"
for bin in dwell-aggregator dwell-sidecar; do
  [ -x "$DWELL_BIN_DIR/$bin" ] || missing+=("$DWELL_BIN_DIR/$bin (cargo build -p $bin)")
done
if [ ${#missing[@]} -gt 0 ]; then
  printf 'manifests/test.sh: missing: %s\n' "${missing[@]}" >&2
  echo "run scripts/test.sh, or: source scripts/lib/services.sh && ensure_tools; cargo build --bins" >&2
  exit 1
fi

# The scripts themselves must be sound shell.
bash -n scripts/gen-certs.sh

cd tests
exec python3 -m unittest discover --start-directory . --pattern 'test_*.py' --verbose "$@"
