# codeapi in one image: the API, nsjail and all 13 language runtimes, installed by the same
# scripts/install as a host install. Sandboxes need namespaces and cgroups, which exist only at run
# time, so the steps that start sandboxes run at container start (docker/entrypoint.sh); what the
# container must be granted for them is listed, with reasons, in docker-compose.yml.
#
# The base is Debian 12 made offline (no image registry needed):
#   mmdebstrap --variant=minbase bookworm - | docker import - codeapi-base:bookworm
# Layers, slowest first: the runtimes (only scripts/install and the sandbox's Python list), then the
# project's dependencies (pyproject.toml), then the code, so a code change rebuilds in seconds.
ARG BASE_IMAGE=codeapi-base:bookworm
FROM ${BASE_IMAGE}
# Extra CA certificates (PEM) the build must trust, e.g. a TLS-intercepting proxy's on the way to PyPI
# and npm; ca-certificates, installed first by scripts/install, adds them to the system bundle, which
# pip and npm are pointed at.
ARG EXTRA_CA_CERTS=""
RUN if [ -n "$EXTRA_CA_CERTS" ]; then mkdir -p /usr/local/share/ca-certificates \
    && printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/build-extra.crt; fi
# apt in the image: no recommended packages (they double its size: GDAL for ggplot2's sf, R's HTML
# manuals, X11 tools), and dpkg without fsync (a lost build is simply rebuilt).
RUN echo 'APT::Install-Recommends "false";' > /etc/apt/apt.conf.d/90codeapi-no-recommends \
    && echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/90codeapi-unsafe-io
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
WORKDIR /app
COPY scripts/install scripts/sandbox-python.txt scripts/
COPY scripts/toolbox scripts/toolbox/
RUN scripts/install --image --runtimes-only && apt-get clean && rm -rf /var/lib/apt/lists/*
# An editable install of an empty package brings the dependencies and the `codeapi` command; the
# real package, copied next, is what the editable install then loads.
COPY pyproject.toml README.md .env.example ./
RUN mkdir codeapi && touch codeapi/__init__.py && scripts/install --image \
    && rm -rf codeapi .env && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY codeapi ./codeapi
COPY docker/entrypoint.sh /usr/local/bin/codeapi-entrypoint
# The API listens on API_PORT inside the container; PORT is the host port compose publishes.
ENV API_PORT=8000
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/codeapi-entrypoint"]
CMD ["/app/.venv/bin/codeapi", "serve"]
