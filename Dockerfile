# NetSpectra: one image for every service (probe, engine, api, ai, up, analyze ...).
#
#   docker build -t netspectra:0.1.0 .
#   docker run --rm netspectra:0.1.0 --help
#   docker run --rm -v "$PWD:/data:ro" netspectra:0.1.0 analyze /data/capture.pcap
#
# The stack (NATS, ClickHouse, engine, API, AI, Grafana, probe): deploy/compose.yaml; Kubernetes:
# deploy/helm/netspectra. See docs/deploy.md.
#
# Build arguments:
#   PYTHON_IMAGE     base image of both stages (default python:3.11-slim-bookworm)
#   NUMBA_CPU_NAME   CPU the numba kernels are compiled for at build time (default "generic": the cache
#                    baked into the image is valid on every x86-64 host, so containers start in about a
#                    second instead of compiling for ~15 s). See docs/deploy.md before changing it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the package and its dependencies in a virtual environment (wheels only, no compiler) ----
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/netspectra

WORKDIR /src
# Only what the wheel is built from (pyproject names README.md as its readme). The generated gRPC
# modules are committed under src/, so no protoc step is needed.
COPY pyproject.toml README.md ./
COPY src ./src
# A regular (non-editable) install: the image does not depend on /src.
RUN /opt/netspectra/bin/pip install --upgrade pip \
 && /opt/netspectra/bin/pip install ".[all]" \
 && /opt/netspectra/bin/netspectra --version

# ---- runtime ----
FROM ${PYTHON_IMAGE} AS runtime

ARG NUMBA_CPU_NAME=generic

LABEL org.opencontainers.image.title="NetSpectra" \
      org.opencontainers.image.description="Network traffic monitoring and analysis: probe, engine, query API, AI service." \
      org.opencontainers.image.licenses="Apache-2.0"

# tini: PID 1 that forwards SIGTERM/SIGINT to netspectra (graceful stop: final snapshots, drained
# capture ring) and reaps children (`netspectra up` runs a nats-server child).
# tcpdump: `netspectra probe --bpf` compiles filter expressions with `tcpdump -ddd`.
# libcap2-bin: getpcaps/capsh, to check the probe's capabilities from inside a container.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini tcpdump libcap2-bin \
 && rm -rf /var/lib/apt/lists/*

# An unprivileged user for every service but the live probe (AF_PACKET needs CAP_NET_RAW, which Docker
# grants to root only: run the probe as root with every capability dropped except NET_RAW/NET_ADMIN).
RUN groupadd --system --gid 10001 netspectra \
 && useradd --system --uid 10001 --gid netspectra --home-dir /var/lib/netspectra --shell /usr/sbin/nologin netspectra \
 && mkdir -p /var/lib/netspectra /etc/netspectra /var/cache/netspectra/numba \
 && chown -R netspectra:netspectra /var/lib/netspectra /var/cache/netspectra

COPY --from=build /opt/netspectra /opt/netspectra

ENV PATH=/opt/netspectra/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/var/cache/netspectra/numba \
    NUMBA_CPU_NAME=${NUMBA_CPU_NAME} \
    API_GRPC_LISTEN_ADDR=0.0.0.0:50051 \
    API_HTTP_LISTEN_ADDR=0.0.0.0:8080 \
    AI_GRPC_LISTEN_ADDR=0.0.0.0:50052
# The services listen on 127.0.0.1 unless told otherwise; inside a container that would be unreachable
# through a published port, so the image says 0.0.0.0 explicitly (the API and AI services warn at start
# when they are reachable without tokens: see docs/api.md, "Authentication and TLS").
# The services' ops endpoint (NETSPECTRA_OPS_LISTEN=0.0.0.0:9100) and JSON logs
# (NETSPECTRA_LOG_FORMAT=json) are switched on by deploy/compose.yaml and the Helm chart, not here, so a
# one-off `docker run ... analyze` binds no port and logs for a person.

# Compile every numba kernel now (reader, decoder, every aggregator kind, Arrow output, the wire codec
# and shard hash) into NUMBA_CACHE_DIR, as the service user, so that containers load them from the cache;
# the NRT's own functions first, into their file there (netspectra.numba_lean: commands load them too);
# then loaded once as a command loads them, which writes beside them the names each kernel's library
# defines (netspectra.numba_lean.unserialize_library: commands read those instead of parsing bitcode);
# last, their export for `analyze`'s numba-free start (netspectra.jit: the kernels' machine code loaded
# without importing numba; keyed on the build host's CPU, so a container on another CPU runs its first
# analyze on numba and writes its own export here).
USER 10001:10001
RUN python -c "from netspectra.numba_lean import prepare_nrt; prepare_nrt(); from netspectra.offline.warmup import warm_up; t = warm_up(); print(f'numba kernels compiled in {t:.1f} s')" \
 && python -c "from netspectra.lazy import load_cached_kernels_lean; load_cached_kernels_lean(); from netspectra.offline.warmup import warm_up; warm_up()" \
 && python -c "from netspectra.nojit_export import prepare; prepare()" \
 && netspectra config check >/dev/null

WORKDIR /var/lib/netspectra
# 9100: ops (/metrics, /healthz, /readyz); 50051: gRPC query API; 8080: HTTP API; 50052: AI service.
EXPOSE 9100 50051 8080 50052

ENTRYPOINT ["/usr/bin/tini", "--", "netspectra"]
CMD ["--help"]
