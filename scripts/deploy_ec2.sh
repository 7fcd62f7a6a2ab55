#!/usr/bin/env bash
# Replace the running tabpipe container on this host with IMAGE; roll back if it never gets healthy.
#
#   scripts/deploy_ec2.sh IMAGE        e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/tabpipe:<sha>
#
# The caller must already be logged in to the registry (the deploy workflow does it with the
# instance role). Settings, all optional:
#   TABPIPE_CONTAINER        container to replace                          (tabpipe)
#   TABPIPE_ENV_FILE         docker --env-file with MONGODB_URI, ...       (/etc/tabpipe/app.env)
#   TABPIPE_CONFIG_DIR       host folder mounted read-only at /app/config  (/etc/tabpipe/config)
#   TABPIPE_HOST_PORT        host port published to the container's 8000   (8000)
#   TABPIPE_HEALTH_TIMEOUT   seconds to wait for GET /health to answer 2xx (120)
#   TABPIPE_HEALTH_INTERVAL  seconds between two probes                    (3)
set -euo pipefail

image="${1:?usage: deploy_ec2.sh IMAGE}"
name="${TABPIPE_CONTAINER:-tabpipe}"
env_file="${TABPIPE_ENV_FILE:-/etc/tabpipe/app.env}"
config_dir="${TABPIPE_CONFIG_DIR:-/etc/tabpipe/config}"
port="${TABPIPE_HOST_PORT:-8000}"
timeout="${TABPIPE_HEALTH_TIMEOUT:-120}"
interval="${TABPIPE_HEALTH_INTERVAL:-3}"

log() { printf '[deploy] %s\n' "$*" >&2; }

# Wait until /health answers 2xx; give up early if the container stopped or restarted (crashed).
wait_healthy() {
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if [[ "$(docker inspect -f '{{.State.Running}} {{.RestartCount}}' "$name" 2>/dev/null)" != "true 0" ]]; then
      log "container $name stopped or restarted"
      return 1
    fi
    if curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:${port}/health"; then
      return 0
    fi
    sleep "$interval"
  done
  log "no healthy answer from /health within ${timeout}s"
  return 1
}

[[ -r "$env_file" ]] || { log "env file $env_file is missing or unreadable"; exit 1; }
[[ -d "$config_dir" ]] || { log "config folder $config_dir is missing"; exit 1; }

docker pull "$image"

previous=""
if docker container inspect "$name" >/dev/null 2>&1; then
  previous="$(docker inspect -f '{{.Config.Image}}' "$name")"
  log "current image: $previous"
  docker rm -f "${name}-previous" >/dev/null 2>&1 || true
  docker stop "$name" >/dev/null
  docker rename "$name" "${name}-previous"
fi

log "starting $image"
if docker run -d --name "$name" --restart unless-stopped \
  --env-file "$env_file" -v "${config_dir}:/app/config:ro" -p "${port}:8000" \
  "$image" >/dev/null && wait_healthy; then
  log "healthy: $image"
  [[ -z "$previous" ]] || docker rm "${name}-previous" >/dev/null
  exit 0
fi

log "deployment of $image failed; last log lines:"
docker logs --tail 50 "$name" >&2 || true
docker rm -f "$name" >/dev/null 2>&1 || true
if [[ -n "$previous" ]]; then
  docker rename "${name}-previous" "$name"
  docker start "$name" >/dev/null
  if wait_healthy; then
    log "rolled back to $previous"
  else
    log "rolled back to $previous, which is not healthy either"
  fi
fi
exit 1
