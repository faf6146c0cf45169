#!/usr/bin/env bash
# Tests for the Kubernetes manifests and images, offline: renders every kustomization with
# `kubectl kustomize` (openssl certificates generated into a temporary copy), validates every object
# against the Kubernetes OpenAPI schemas of several minor versions (kubernetes-validate, strict),
# lints the Dockerfiles with hadolint, and runs the semantic checks in manifests/tests/.
# Installs nothing: scripts/lib/services.sh `ensure_tools` provides hadolint and kubernetes-validate,
# and scripts/test.sh builds target/debug/dwell-{aggregator,sidecar} first (their --help is checked).
set -euo pipefail
cd "$(dirname "$0")"

missing=()
for tool in kubectl openssl hadolint python3; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
python3 -c 'import yaml, kubernetes_validate' 2>/dev/null || missing+=("python: kubernetes-validate/PyYAML")
for bin in dwell-aggregator dwell-sidecar; do
  [ -x "../target/debug/$bin" ] || missing+=("../target/debug/$bin (cargo build -p $bin)")
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
