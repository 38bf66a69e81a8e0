"""The ``codeapi`` command: serve the API, prepare the host, warm caches, check every language."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from fastapi import FastAPI

from codeapi.config import ConfigError, Settings
from codeapi.config.server_tls import withhold_from_tls_clients


def read_settings() -> Settings:
    try:
        return Settings.load()
    except ConfigError as error:
        print(f"codeapi: invalid configuration: {error}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None


def load_settings() -> Settings:
    """The settings of a process that connects out or starts processes: once they are read, the guide's
    SSL_CERT_FILE (the server's certificate) leaves its environment, so that no TLS client of this
    process or of its children takes it for a CA bundle (codeapi/config/server_tls.py)."""
    settings = read_settings()
    withhold_from_tls_clients()
    return settings


def build_app() -> FastAPI:
    """uvicorn factory, so API_RELOAD can re-import it."""
    from codeapi.app import create_app
    from codeapi.observability.logging import configure_logging

    settings = load_settings()
    configure_logging(settings.logging)
    try:
        settings.refuse_insecure_defaults()
        return create_app(settings)
    except ConfigError as error:
        print(f"codeapi: {error}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    # Read, not loaded: build_app reads the settings again (in this process, or in API_RELOAD's worker,
    # which inherits this environment) and must see the same SSL_CERT_FILE; that read withholds it,
    # before the app opens a connection or starts a process.
    settings = read_settings()
    if problems := host_problems(settings):
        for problem in problems:
            print(f"codeapi: cannot serve: {problem}", file=sys.stderr)  # noqa: T201
        return 1
    ssl = settings.ssl
    https = ssl.https_active
    uvicorn.run(
        "codeapi.cli:build_app",
        factory=True,
        host=args.host or settings.api.host,
        port=args.port or settings.api.listen_port or settings.api.port,
        reload=settings.api.reload,
        log_config=None,
        access_log=settings.logging.enable_access_logs,
        ssl_certfile=str(ssl.cert_file) if https else None,
        ssl_keyfile=str(ssl.key_file) if https else None,
        ssl_ca_certs=str(ssl.ca_certs) if https and ssl.ca_certs else None,
        timeout_graceful_shutdown=10,
        # uvloop spawns subprocesses with a full fork (7-10 ms each here); stdlib asyncio uses
        # posix_spawn/vfork (1-2 ms). Every execution spawns nsjail, so this dominates. See docs/performance.md.
        loop="asyncio",
    )
    return 0


def host_problems(settings: Settings) -> list[str]:
    from codeapi.sandbox.host import host_problems as find

    security = settings.security
    isolated = security.enable_network_isolation or security.enable_filesystem_isolation
    return find(settings.sandbox, require_cgroups=isolated)


def check_host(_: argparse.Namespace) -> int:
    """Exit status 0 when this host can serve as configured; otherwise say what is missing."""
    problems = host_problems(read_settings())
    for problem in problems:
        print(f"codeapi: {problem}", file=sys.stderr)  # noqa: T201
    if not problems:
        print("codeapi: this host can serve")  # noqa: T201
    return 1 if problems else 0


def prepare_host_command(_: argparse.Namespace) -> int:
    from codeapi.maintenance import prepare_for_cli

    prepare_for_cli(load_settings())
    return 0


def warm_go_cache(_: argparse.Namespace) -> int:
    from codeapi.maintenance import warm_go_cache as warm

    return asyncio.run(warm(load_settings()))


def check_languages(args: argparse.Namespace) -> int:
    from codeapi.maintenance import check_languages as check

    return asyncio.run(check(load_settings(), args.lang))


def keys_command(args: argparse.Namespace) -> int:
    from codeapi.auth.keys_command import run
    from codeapi.observability.logging import configure_logging

    settings = load_settings()
    configure_logging(settings.logging)
    return asyncio.run(run(settings, args))


def jwt_keygen(args: argparse.Namespace) -> int:
    from codeapi.auth.keygen import key_pair_lines, new_kid

    print(key_pair_lines(args.kid or new_kid()).render(), end="")  # noqa: T201
    return 0


def doctor_command(_: argparse.Namespace) -> int:
    from codeapi.doctor import run

    return run(load_settings())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codeapi", description="Self-hosted Code Interpreter API")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_parser = commands.add_parser("serve", help="start the HTTP API (API_HOST:PORT)")
    serve_parser.add_argument("--host", help="bind address (default: API_HOST)")
    serve_parser.add_argument("--port", type=int, help="port (default: PORT)")
    serve_parser.set_defaults(handler=serve)
    commands.add_parser("prepare-host", help="create cgroup parents and the sandbox directory").set_defaults(
        handler=prepare_host_command
    )
    commands.add_parser("check-host", help="say whether this host can run sandboxes, and what is missing").set_defaults(
        handler=check_host
    )
    commands.add_parser("warm-go-cache", help="build Go's standard library cache inside the sandbox").set_defaults(
        handler=warm_go_cache
    )
    check_parser = commands.add_parser("check-languages", help="run hello world in every language in the sandbox")
    check_parser.add_argument("lang", nargs="*", help="only these language ids")
    check_parser.set_defaults(handler=check_languages)
    from codeapi.auth.keys_command import add_arguments

    keys_parser = commands.add_parser("keys", help="create, list, disable, enable or revoke managed API keys")
    add_arguments(keys_parser)
    keys_parser.set_defaults(handler=keys_command)
    commands.add_parser("doctor", help="check the host and backends; exit status 0 when it can serve").set_defaults(
        handler=doctor_command
    )
    keygen_parser = commands.add_parser(
        "jwt-keygen", help="print a new Ed25519 pair as LibreChat's and codeapi's .env lines"
    )
    keygen_parser.add_argument("--kid", help="the key id both sides name (default: lc-codeapi-<date>-<random>)")
    keygen_parser.set_defaults(handler=jwt_keygen)
    args = parser.parse_args(argv)
    if args.command in SANDBOX_COMMANDS:
        run_delegated_if_needed()
    result: int = args.handler(args)
    return result


# Commands that start sandboxes; check-host only looks.
SANDBOX_COMMANDS = ("serve", "prepare-host", "warm-go-cache", "check-languages")


def run_delegated_if_needed() -> None:
    """On a systemd cgroup v2 host, started from a shell: re-run this very command in a delegated
    scope (see docs/deployment.md) instead of refusing to start."""
    from codeapi.sandbox.host import DELEGATED_MARK, delegated_argv

    command = delegated_argv([sys.executable, "-m", "codeapi", *sys.argv[1:]])
    if command is not None:
        os.environ[DELEGATED_MARK] = "1"
        os.execv(command[0], command)


if __name__ == "__main__":
    raise SystemExit(main())
