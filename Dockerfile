# Stack Supervisor sidecar image.
#
#   docker build -t stack-supervisor .                         # online, official slim Python
#   docker build --build-arg BASE=stacksup/base:bookworm \
#                -t ... .                  # offline, with wheelhouse/ filled
#
# BASE must be Debian-like. When it has no python3 (a bare Debian base), the
# distribution's python3 is installed. WHEELS points at a folder in the build
# context holding the project's wheel and every dependency (scripts/testenv
# fills wheelhouse/ with `pip wheel`); when it has none, pip installs online.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG WHEELS=wheelhouse
RUN if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
        && apt-get clean && rm -rf /var/lib/apt/lists/*; \
    fi
COPY ${WHEELS}/ /wheels/
COPY pyproject.toml README.md /src/
COPY supervisor /src/supervisor
RUN python3 -m venv /opt/supervisor \
 && if ls /wheels/stack_supervisor-*.whl >/dev/null 2>&1; then \
        /opt/supervisor/bin/pip install --no-cache-dir --no-index --find-links /wheels stack-supervisor; \
    else \
        /opt/supervisor/bin/pip install --no-cache-dir /src; \
    fi \
 && /opt/supervisor/bin/pip uninstall -y pip >/dev/null \
 && find /opt/supervisor -name '__pycache__' -prune -exec rm -rf {} +

FROM ${BASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
RUN if ! command -v python3 >/dev/null; then \
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
        && apt-get clean && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin supervisor \
 && mkdir -p -m 0700 /backups /state && chown supervisor /backups /state
COPY --from=build /opt/supervisor /opt/supervisor
ENV PATH=/opt/supervisor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
LABEL org.opencontainers.image.title="stack-supervisor" \
      org.opencontainers.image.description="Safe updates for Docker Compose stacks: pinned digests, signatures, snapshots, rollback" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://example.invalid/stack-supervisor" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 10001
VOLUME ["/backups", "/state"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["supervisor"]
CMD ["serve"]
