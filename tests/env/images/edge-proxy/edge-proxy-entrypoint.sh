#!/bin/bash
# Render nginx.conf for UPSTREAM (host:port of a Compose service) and run nginx.
#
# Why each setting:
# - `resolver 127.0.0.11 valid=1s` + a variable in proxy_pass: nginx asks Docker's
#   embedded DNS again at most a second later, instead of resolving the name once at
#   start, so a container that takes over the alias gets the traffic.
# - proxy_next_upstream on connection errors and 502/503 with 3 tries: while the alias
#   names both the old and the new container, a request that meets the one going away
#   is retried on the other one before the client sees anything (GET and HEAD only:
#   nginx never retries a POST that may have reached the app).
# - a connect timeout of 2 s: a stopped container's address answers nothing at all,
#   so the wait on it should be short, but not under a second: a busy app whose listen
#   queue is full drops the SYN, and the kernel only sends it again after 1 s (checked:
#   with 500 ms, a loaded 2-core machine turned that into 504s with nothing stopped).
set -euo pipefail

: "${UPSTREAM:=app:8000}"
: "${LISTEN_PORT:=8080}"
: "${LOG_LEVEL:=warn}"
case "$UPSTREAM" in
    *[!A-Za-z0-9_.:-]* | "") echo "edge-proxy: bad UPSTREAM '$UPSTREAM'" >&2; exit 2 ;;
esac

cat >/etc/nginx/nginx.conf <<CONF
user www-data;
worker_processes 1;
daemon off;
pid /run/nginx.pid;
error_log /dev/stderr ${LOG_LEVEL};
events { worker_connections 1024; }
http {
    access_log off;
    resolver 127.0.0.11 valid=1s ipv6=off;
    resolver_timeout 2s;
    server {
        listen ${LISTEN_PORT};
        location / {
            set \$up http://${UPSTREAM};
            proxy_pass \$up;
            proxy_set_header Host \$host;
            proxy_connect_timeout 2s;
            proxy_send_timeout 10s;
            proxy_read_timeout 30s;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 6s;
            # Which addresses a request went to (all tries): a failure names its upstreams.
            add_header X-Upstream \$upstream_addr always;
        }
    }
}
CONF
exec nginx
