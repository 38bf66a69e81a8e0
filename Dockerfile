# codeapi in one image: the API, nsjail and all 13 language runtimes, installed by the same
# scripts/install the tests use. Sandboxes need namespaces and cgroups at run time, so the
# container runs with SYS_ADMIN (see docker-compose.yml); the steps that start sandboxes run at
# container start instead of at build time.
FROM debian:12
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq && apt-get install -y -q --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md .env.example ./
COPY scripts ./scripts
COPY codeapi ./codeapi
RUN scripts/install --image && rm -f .env && rm -rf /var/lib/apt/lists/*
COPY docker/entrypoint.sh /usr/local/bin/codeapi-entrypoint
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/codeapi-entrypoint"]
CMD ["/app/.venv/bin/codeapi", "serve"]
