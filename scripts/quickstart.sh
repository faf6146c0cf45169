#!/usr/bin/env bash
# Quick start: a working dwell pipeline on one machine, on built-in defaults, showing what the HPA
# would read. Builds both binaries, starts the aggregator (self-signed TLS, built-in rule
# `seconds` = p90 wait over 30 s), one sidecar (pod default/binder-quickstart) and a load that
# makes a queue fall behind and catch up, then reads the metric with `kubectl get --raw` exactly
# as the HPA does and prints it as it changes. Uses RabbitMQ when one answers at $DWELL_AMQP_URL
# (default amqp://guest:guest@127.0.0.1:5672/%2f); otherwise the sidecar's report source with a
# built-in load generator. Ctrl-C stops everything it started.
#
# Environment: DWELL_AMQP_URL, DWELL_QUICKSTART_SECONDS (stop after N seconds; default: run
# until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

AMQP_URL="${DWELL_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
RUN_FOR="${DWELL_QUICKSTART_SECONDS:-0}"
NAMESPACE=default
QUEUE="dwell-quickstart-$$"
POD=binder-quickstart
work="$(mktemp -d -t dwell-quickstart.XXXXXX)"
pids=()

cleanup() {
  local code=$?
  trap - EXIT INT TERM
  # Newest first: the load, then the sidecar (it says goodbye), then the aggregator.
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pids[i]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
  log "stopped; nothing left running"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The URL with its password hidden.
redact() { sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"; }

# host and port of an amqp:// URL (defaults 127.0.0.1, 5672).
amqp_host_port() {
  local rest="${1#*://}"
  rest="${rest##*@}"
  rest="${rest%%/*}"
  local host="${rest%%:*}" port=5672
  [[ "$rest" == *:* ]] && port="${rest##*:}"
  echo "${host:-127.0.0.1} ${port}"
}

broker_answers() {
  local host port
  read -r host port < <(amqp_host_port "$1")
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# Waits for a log file to contain a match of an extended regex; prints the match.
wait_for_line() {
  local file=$1 pattern=$2 what=$3 match
  for _ in $(seq 1 300); do
    match="$(grep -oE "$pattern" "$file" 2>/dev/null | head -n1 || true)"
    if [ -n "$match" ]; then echo "$match"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $what; its log:" >&2
  sed 's/^/    /' "$file" >&2
  return 1
}

log "building dwell-aggregator, dwell-sidecar and the demo load (the first build takes a few minutes)"
cargo build --quiet -p dwell-aggregator -p dwell-sidecar --bins
cargo build --quiet -p dwell-e2e --example demo_load
bin=target/debug

log "starting dwell-aggregator (self-signed TLS, built-in rules)"
NO_COLOR=1 "$bin/dwell-aggregator" --metrics-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 \
  --tls-self-signed-out "$work/ca.pem" >"$work/aggregator.log" 2>&1 &
pids+=($!)
https_addr="$(wait_for_line "$work/aggregator.log" 'metrics API listening on https://[^ ]+' 'the metrics API')"
https_addr="${https_addr##*https://}"
grpc_addr="$(wait_for_line "$work/aggregator.log" 'gRPC listening on [^ ]+' 'the gRPC listener')"
grpc_addr="${grpc_addr##* }"
log "metrics API on https://$https_addr, gRPC ingest on $grpc_addr"

# A kubeconfig that trusts exactly the certificate the aggregator generated (written by
# --tls-self-signed-out; public part only). The token only stops kubectl prompting.
cat >"$work/kubeconfig" <<KUBE
apiVersion: v1
kind: Config
clusters:
- name: dwell
  cluster:
    server: https://$https_addr
    certificate-authority: $work/ca.pem
users:
- name: quickstart
  user: {token: unused}
contexts:
- name: dwell
  context: {cluster: dwell, user: quickstart}
current-context: dwell
KUBE

sidecar_args=(--aggregator "http://$grpc_addr" --queue "$QUEUE" --pod-name "$POD"
  --pod-namespace "$NAMESPACE" --label app=binder --report-udp 127.0.0.1:0 --report-http off
  --telemetry-addr 127.0.0.1:0 --shutdown-timeout 2s)
if broker_answers "$AMQP_URL"; then
  mode=rabbitmq
  log "RabbitMQ answers at $(redact "$AMQP_URL"): real publisher and consumer on queue $QUEUE"
  sidecar_args+=(--amqp-url "$AMQP_URL" --stats-interval 2s)
else
  mode=synthetic
  log "no RabbitMQ at $(redact "$AMQP_URL"): using the sidecar's report source with the built-in load generator"
fi

log "starting dwell-sidecar (pod $NAMESPACE/$POD)"
NO_COLOR=1 "$bin/dwell-sidecar" "${sidecar_args[@]}" >"$work/sidecar.log" 2>&1 &
pids+=($!)
started="$(wait_for_line "$work/sidecar.log" 'report_udp=Some\([^)]+\)' 'the sidecar')"
report_udp="${started#report_udp=Some(}"
report_udp="${report_udp%)}"

if [ "$mode" = rabbitmq ]; then
  "$bin/examples/demo_load" rabbitmq "$AMQP_URL" "$QUEUE" "$report_udp" >"$work/load.log" 2>&1 &
else
  "$bin/examples/demo_load" synthetic "$QUEUE" "$report_udp" >"$work/load.log" 2>&1 &
fi
pids+=($!)
log "load: 15 s at twice what one consumer handles, then 25 s quiet, repeating"

object="/apis/custom.metrics.k8s.io/v1beta2/namespaces/$NAMESPACE/deployments.apps/binder/seconds?metricLabelSelector=queue%3D$QUEUE"
log "the HPA's request: kubectl --kubeconfig $work/kubeconfig get --raw '$object'"
log "printing the metric as it changes (Ctrl-C to stop)"
last=""
start=$SECONDS
# Children run in the background and the script `wait`s for them: a trapped Ctrl-C interrupts
# `wait` at once (a foreground child that handles SIGINT itself would swallow it instead).
while [ "$RUN_FOR" = 0 ] || [ $((SECONDS - start)) -lt "$RUN_FOR" ]; do
  kubectl --kubeconfig "$work/kubeconfig" get --raw "$object" >"$work/body" 2>&1 &
  if wait $!; then
    body="$(cat "$work/body")"
    value="$(grep -oE '"value": ?"[^"]+"' <<<"$body" | head -n1 | grep -oE '"[^"]+"$' | tr -d '"')"
    stamp="$(grep -oE '"timestamp": ?"[^"]+"' <<<"$body" | head -n1 | grep -oE '"[^"]+"$' | tr -d '"')"
    key="$value"
    line="seconds=$value  (p90 wait of queue $QUEUE over 30 s; observed at $stamp)"
  else
    key="error"
    line="no value: $(tail -n1 "$work/body")"
  fi
  if [ "$key" != "$last" ]; then
    printf '%s  %s\n' "$(date +%T)" "$line"
    last="$key"
  fi
  sleep 1 &
  wait $!
done
