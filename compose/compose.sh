#!/usr/bin/env bash
# `docker compose` for this stack, with the sidecar's pins loaded over .env.
#
#   ./compose.sh up -d
#   ./compose.sh ps
#   ./compose.sh exec supervisor supervisor status
#
# The sidecar writes state/versions.env (APP_IMAGE=registry/app@sha256:…) after
# every update and rollback. Compose 1.29 reads one env file only, so the pins are
# exported into the environment, which wins over .env in Compose v1 and v2 alike.
# Only NAME_IMAGE=value lines are taken from it.
#
# STACK_DIR (default: this script's directory) is the project directory holding
# .env, secrets/, state/, backups/ and keys/. COMPOSE_FILE, when set, lists the
# compose files (colon-separated) instead of docker-compose.yml next to this script.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stack_dir=${STACK_DIR:-$here}
pins="$stack_dir/state/versions.env"

if [ -f "$pins" ]; then
    while IFS='=' read -r name value; do
        case "$name" in
            [A-Z]*_IMAGE) export "$name=$value" ;;
        esac
    done <"$pins"
fi
export COMPOSE_FILE=${COMPOSE_FILE:-$here/docker-compose.yml}

if docker compose version >/dev/null 2>&1; then
    exec docker compose --project-directory "$stack_dir" "$@"
fi
exec docker-compose --project-directory "$stack_dir" "$@"
