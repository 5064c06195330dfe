#!/bin/bash
# Render the nginx configuration from the grant flags, then run nginx.
#
# Each flag grants one section of the Engine API (optionally version-prefixed,
# /v1.41/containers/...). Anything not granted answers 403. POST=0 also
# refuses every method but GET and HEAD on granted sections.
set -euo pipefail

: "${SOCKET_PATH:=/var/run/docker.sock}"
: "${LISTEN_PORT:=2375}"
: "${LOG_LEVEL:=warn}"
declare -A default=(
    [EVENTS]=1 [PING]=1 [VERSION]=1
    [AUTH]=0 [BUILD]=0 [COMMIT]=0 [CONFIGS]=0 [CONTAINERS]=0 [DISTRIBUTION]=0
    [EXEC]=0 [GRPC]=0 [IMAGES]=0 [INFO]=0 [NETWORKS]=0 [NODES]=0 [PLUGINS]=0
    [SECRETS]=0 [SERVICES]=0 [SESSION]=0 [SWARM]=0 [SYSTEM]=0 [TASKS]=0 [VOLUMES]=0
)
declare -A path=(
    [EVENTS]=events [PING]=_ping [VERSION]=version [AUTH]=auth [BUILD]=build
    [COMMIT]=commit [CONFIGS]=configs [CONTAINERS]=containers
    [DISTRIBUTION]=distribution [EXEC]=exec [GRPC]=grpc [IMAGES]=images [INFO]=info
    [NETWORKS]=networks [NODES]=nodes [PLUGINS]=plugins [SECRETS]=secrets
    [SERVICES]=services [SESSION]=session [SWARM]=swarm [SYSTEM]=system
    [TASKS]=tasks [VOLUMES]=volumes
)

granted=()
for flag in "${!default[@]}"; do
    value="${!flag:-${default[$flag]}}"
    case "$value" in
        1) granted+=("${path[$flag]}") ;;
        0) ;;
        *) echo "docker-proxy: $flag must be 0 or 1, got '$value'" >&2; exit 2 ;;
    esac
done
case "${POST:-0}" in
    1) method_guard="" ;;
    0) method_guard='if ($request_method !~ ^(GET|HEAD)$) { return 403 "{\"message\":\"docker-proxy: method not granted (POST=0)\"}\n"; }' ;;
    *) echo "docker-proxy: POST must be 0 or 1, got '$POST'" >&2; exit 2 ;;
esac
# nginx workers run as www-data; let them reach the socket through its group
# rather than running them as root.
if [ -S "$SOCKET_PATH" ]; then
    socket_gid=$(stat -c %g "$SOCKET_PATH")
    group=$(getent group "$socket_gid" | cut -d: -f1 || true)
    if [ -z "$group" ]; then
        group=dockersock
        groupadd -g "$socket_gid" "$group"
    fi
    usermod -aG "$group" www-data
else
    echo "docker-proxy: warning: no socket at $SOCKET_PATH" >&2
fi

IFS='|'; sections="${granted[*]}"; unset IFS

cat >/etc/nginx/nginx.conf <<CONF
user www-data;
worker_processes 1;
daemon off;
pid /run/nginx.pid;
error_log /dev/stderr ${LOG_LEVEL};
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    upstream docker_engine { server unix:${SOCKET_PATH}; }
    server {
        listen ${LISTEN_PORT};
        # Exec and attach upgrade the connection; stream both ways unbuffered.
        proxy_http_version 1.1;
        proxy_set_header Upgrade \$http_upgrade;
        proxy_set_header Connection \$connection_upgrade;
        proxy_buffering off;
        proxy_request_buffering off;
        proxy_read_timeout 24h;
        proxy_send_timeout 24h;
        proxy_buffer_size 256k;
        proxy_buffers 8 256k;
        proxy_busy_buffers_size 256k;
        client_max_body_size 0;
        location ~ ^(/v[0-9.]+)?/(${sections})(/|\$) {
            ${method_guard}
            proxy_pass http://docker_engine;
        }
        location / {
            return 403 "{\"message\":\"docker-proxy: path not granted\"}\n";
        }
    }
}
CONF
echo "docker-proxy: granting ${sections//|/, } (POST=${POST:-0}) on :${LISTEN_PORT}" >&2
exec nginx
