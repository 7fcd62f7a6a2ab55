#!/usr/bin/env bash
# Blue/green deploy of IMAGE on this host, with no outage and the old container kept to the end.
#
#   scripts/deploy_ec2.sh IMAGE        e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/tabpipe:<sha>
#
# Layout: two app slots, ${TABPIPE_CONTAINER}-blue and -green, on the docker network
# ${TABPIPE_NETWORK}; each publishes its port 8000 on loopback only (blue 18001, green 18002) for
# health probes. Clients reach the service through an nginx container (${TABPIPE_CONTAINER}-proxy,
# host port ${TABPIPE_HOST_PORT}) whose upstream is the active slot, recorded in ${PROXY_DIR}/active.
#
# Steps: start IMAGE in the idle slot -> wait until its /readyz answers 2xx -> point the proxy at it
# (config swap + graceful `nginx -s reload`, verified through the proxy) -> let in-flight requests
# drain -> stop the old slot (kept, stopped, as the manual rollback target until the next deploy).
# Until the switch is verified, any failure, Ctrl-C or SIGTERM (a cancelled workflow) removes only
# the new container and restores the proxy config: the old container keeps serving throughout.
#
# The caller must already be logged in to the registry (the deploy workflow does it with the
# instance role). Settings, all optional:
#   TABPIPE_CONTAINER        name prefix of the containers                  (tabpipe)
#   TABPIPE_NETWORK          docker network of the proxy and the slots       (tabpipe)
#   TABPIPE_ENV_FILE         docker --env-file of the app (no private keys)  (/etc/tabpipe/app.env)
#   TABPIPE_CONFIG_DIR       host folder mounted read-only at /app/config    (/etc/tabpipe/config)
#   TABPIPE_PROXY_DIR        proxy state: conf.d/default.conf and `active`   (/etc/tabpipe/proxy)
#   TABPIPE_PROXY_IMAGE      nginx image (listens on 8080, non-root)         (nginxinc/nginx-unprivileged:1.27-alpine)
#   TABPIPE_HOST_PORT        host port of the proxy, i.e. of the service     (8000)
#   TABPIPE_BLUE_PORT / TABPIPE_GREEN_PORT   loopback probe ports            (18001 / 18002)
#   TABPIPE_HEALTH_TIMEOUT   seconds to wait for GET /readyz to answer 2xx   (120)
#   TABPIPE_HEALTH_INTERVAL  seconds between two probes                      (3)
#   TABPIPE_DRAIN_SECONDS    wait between the switch and stopping the old    (10)
set -euo pipefail

image="${1:?usage: deploy_ec2.sh IMAGE}"
prefix="${TABPIPE_CONTAINER:-tabpipe}"
network="${TABPIPE_NETWORK:-tabpipe}"
env_file="${TABPIPE_ENV_FILE:-/etc/tabpipe/app.env}"
config_dir="${TABPIPE_CONFIG_DIR:-/etc/tabpipe/config}"
proxy_dir="${TABPIPE_PROXY_DIR:-/etc/tabpipe/proxy}"
proxy_image="${TABPIPE_PROXY_IMAGE:-nginxinc/nginx-unprivileged:1.27-alpine}"
port="${TABPIPE_HOST_PORT:-8000}"
timeout="${TABPIPE_HEALTH_TIMEOUT:-120}"
interval="${TABPIPE_HEALTH_INTERVAL:-3}"
drain="${TABPIPE_DRAIN_SECONDS:-10}"
proxy="${prefix}-proxy"
conf="${proxy_dir}/conf.d/default.conf"

log() { printf '[deploy] %s\n' "$*" >&2; }
exists() { docker container inspect "$1" >/dev/null 2>&1; }
slot_port() { if [[ "$1" == blue ]]; then echo "${TABPIPE_BLUE_PORT:-18001}"; else echo "${TABPIPE_GREEN_PORT:-18002}"; fi; }

# Wait until http://127.0.0.1:$2/readyz answers 2xx; give up early if container $1 stopped or restarted.
wait_healthy() {
  local name="$1" probe_port="$2" deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if [[ "$(docker inspect -f '{{.State.Running}} {{.RestartCount}}' "$name" 2>/dev/null)" != "true 0" ]]; then
      log "container $name stopped or restarted"
      return 1
    fi
    if curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:${probe_port}/readyz"; then
      return 0
    fi
    sleep "$interval"
  done
  log "no healthy answer from $name's /readyz within ${timeout}s"
  return 1
}

# Wait until the proxy's answers come from container $1 (nginx adds X-Tabpipe-Backend).
wait_switched() {
  local name="$1" deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if curl -fsS --max-time 5 -D - -o /dev/null "http://127.0.0.1:${port}/readyz" 2>/dev/null |
        tr -d '\r' | grep -qix "x-tabpipe-backend: ${name}"; then
      return 0
    fi
    sleep "$interval"
  done
  log "the proxy on port $port does not answer from $name within ${timeout}s"
  return 1
}

write_conf() {  # write_conf CONTAINER: the proxy config sending everything to CONTAINER:8000
  local tmp="${conf}.tmp"
  cat > "$tmp" <<EOF
# Written by scripts/deploy_ec2.sh: the active tabpipe slot. Do not edit by hand.
upstream tabpipe_app {
    server $1:8000;
    keepalive 16;
}
server {
    listen 8080;
    client_max_body_size 64m;   # the app enforces its own serve.max_body_mb and answers 413
    location / {
        proxy_pass http://tabpipe_app;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto \$scheme;
        proxy_read_timeout 300s;
        add_header X-Tabpipe-Backend $1 always;
    }
}
EOF
  mv -f "$tmp" "$conf"
}

[[ -r "$env_file" ]] || { log "env file $env_file is missing or unreadable"; exit 1; }
[[ -d "$config_dir" ]] || { log "config folder $config_dir is missing"; exit 1; }
mkdir -p "${proxy_dir}/conf.d"

active="$(cat "${proxy_dir}/active" 2>/dev/null || true)"
case "$active" in
  blue) new=green ;;
  green) new=blue ;;
  *) active="" new=blue ;;
esac
new_name="${prefix}-${new}"
old_name="${active:+${prefix}-${active}}"
new_port="$(slot_port "$new")"
old_conf=""
[[ -f "$conf" ]] && old_conf="$(cat "$conf")"
switched=0
conf_touched=0
legacy_stopped=0

# On any exit before the switch is verified: remove the new container, restore the proxy and
# whatever was serving. The old slot is never stopped before that point, so it keeps serving.
# shellcheck disable=SC2317  # reached through the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((switched == 0)); then
    log "deploy of $image did not complete (exit $rc); the new container $new_name is removed"
    if exists "$new_name"; then
      docker logs --tail 50 "$new_name" >&2 2>/dev/null || true
      docker rm -f "$new_name" >/dev/null 2>&1 || true
    fi
    if ((conf_touched)); then
      if [[ -n "$old_conf" ]]; then
        printf '%s\n' "$old_conf" > "${conf}.tmp" && mv -f "${conf}.tmp" "$conf"
        docker exec "$proxy" nginx -s reload >/dev/null 2>&1 || true
      else
        rm -f "$conf"
      fi
    fi
    if ((legacy_stopped)); then
      docker rm -f "$proxy" >/dev/null 2>&1 || true
      docker start "$prefix" >/dev/null 2>&1 || true
      log "restarted the previous container $prefix"
    fi
    [[ -z "$old_name" ]] || log "still serving: $old_name"
    ((rc != 0)) || rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

docker pull "$image"
docker network inspect "$network" >/dev/null 2>&1 || docker network create "$network" >/dev/null

# A leftover in the idle slot (stopped rollback target or a failed attempt) makes room.
docker rm -f "$new_name" >/dev/null 2>&1 || true

log "starting $image as $new_name (probe port $new_port); ${old_name:-nothing} keeps serving"
docker run -d --name "$new_name" --restart unless-stopped --network "$network" \
  --env-file "$env_file" -v "${config_dir}:/app/config:ro" -p "127.0.0.1:${new_port}:8000" \
  --label "org.opencontainers.image.ref.name=$image" "$image" >/dev/null
wait_healthy "$new_name" "$new_port"
log "healthy: $new_name"

conf_touched=1
write_conf "$new_name"
if exists "$proxy"; then
  docker exec "$proxy" nginx -s reload >/dev/null
else
  # First blue/green deploy: a container from the old single-container layout holds the port.
  if exists "$prefix"; then
    log "stopping the previous single container $prefix (kept for rollback)"
    legacy_stopped=1
    docker stop --time 30 "$prefix" >/dev/null
  fi
  docker run -d --name "$proxy" --restart unless-stopped --network "$network" \
    -p "${port}:8080" -v "${proxy_dir}/conf.d:/etc/nginx/conf.d:ro" "$proxy_image" >/dev/null
fi
wait_switched "$new_name"
printf '%s\n' "$new" > "${proxy_dir}/active.tmp" && mv -f "${proxy_dir}/active.tmp" "${proxy_dir}/active"
switched=1
log "traffic switched to $new_name ($image)"

if [[ -n "$old_name" ]] && exists "$old_name"; then
  sleep "$drain"  # requests already proxied to the old slot finish
  docker stop --time 30 "$old_name" >/dev/null
  log "stopped $old_name (kept for rollback: see docs/deploy.md)"
fi
exit 0
