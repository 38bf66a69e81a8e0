"""The root settings object: groups for internal code, flat names for the guide's programmatic access.

Flat access (``settings.max_memory_mb``) is derived from the groups by one name table whose
invariant is: flat name == environment variable name in lower case. Nothing is declared twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import AliasChoices, ValidationError
from pydantic_settings import BaseSettings

from codeapi.config.groups import (
    READ_ENVIRONMENT,
    ApiSettings,
    AuthSettings,
    DevSettings,
    EgressSettings,
    LimitsSettings,
    LogSettings,
    PoolSettings,
    RedisSettings,
    ReplSettings,
    RuntimeSessionSettings,
    S3Settings,
    SandboxSettings,
    SecuritySettings,
    SessionSettings,
    SslSettings,
    StateSettings,
    StorageSettings,
)

GROUPS: dict[str, type[BaseSettings]] = {
    "api": ApiSettings,
    "ssl": SslSettings,
    "auth": AuthSettings,
    "redis": RedisSettings,
    "s3": S3Settings,
    "sandbox": SandboxSettings,
    "limits": LimitsSettings,
    "session": SessionSettings,
    "pool": PoolSettings,
    "repl": ReplSettings,
    "state": StateSettings,
    "runtime_session": RuntimeSessionSettings,
    "security": SecuritySettings,
    "egress": EgressSettings,
    "logging": LogSettings,
    "dev": DevSettings,
    "storage": StorageSettings,
}


class ConfigError(Exception):
    """An environment variable has an invalid value; the message names the variable."""


def env_name(group: type[BaseSettings], field: str) -> str:
    info = group.model_fields[field]
    if isinstance(info.validation_alias, AliasChoices):
        first = info.validation_alias.choices[0]
        assert isinstance(first, str)
        return first
    return f"{group.model_config.get('env_prefix', '')}{field}".upper()


def build_name_table() -> dict[str, tuple[str, str]]:
    """ENV_NAME -> (group attribute, field name), for every variable."""
    table: dict[str, tuple[str, str]] = {}
    for attr, group in GROUPS.items():
        for field in group.model_fields:
            name = env_name(group, field)
            if name in table:
                raise RuntimeError(f"{name} is declared twice")
            table[name] = (attr, field)
    return table


ENV_NAMES = build_name_table()


def describe(error: ValidationError, group: type[BaseSettings]) -> str:
    lines = []
    for item in error.errors():
        loc = str(item["loc"][0]) if item["loc"] else ""
        name = loc.upper() if loc.upper() in ENV_NAMES else env_name(group, loc) if loc in group.model_fields else ""
        lines.append(f"{name or group.__name__}: {item['msg']} (got {item.get('input')!r})")
    return "; ".join(lines)


@dataclass(frozen=True)
class Settings:
    api: ApiSettings
    ssl: SslSettings
    auth: AuthSettings
    redis: RedisSettings
    s3: S3Settings
    sandbox: SandboxSettings
    limits: LimitsSettings
    session: SessionSettings
    pool: PoolSettings
    repl: ReplSettings
    state: StateSettings
    runtime_session: RuntimeSessionSettings
    security: SecuritySettings
    egress: EgressSettings
    logging: LogSettings
    dev: DevSettings
    storage: StorageSettings

    ENV_NAMES: ClassVar[dict[str, tuple[str, str]]] = ENV_NAMES

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, env_file: str | None = ".env", environ: bool = True
    ) -> Settings:
        """Read every group from ``overrides`` (ENV_NAME -> value), the environment and ``env_file``.

        ``environ=False`` ignores the process environment (tests, so the machine cannot leak in).
        """
        given = {key.upper(): value for key, value in (overrides or {}).items()}
        unknown = sorted(set(given) - set(ENV_NAMES))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        groups: dict[str, BaseSettings] = {}
        token = READ_ENVIRONMENT.set(environ)
        try:
            for attr, group in GROUPS.items():
                kwargs = {
                    field: given[name] for name, (owner, field) in ENV_NAMES.items() if owner == attr and name in given
                }
                try:
                    groups[attr] = group(_env_file=env_file, **kwargs)
                except ValidationError as error:
                    raise ConfigError(describe(error, group)) from None
        finally:
            READ_ENVIRONMENT.reset(token)
        return cls(**groups)  # type: ignore[arg-type]

    def refuse_insecure_defaults(self) -> None:
        """Called before serving: the published default key must not guard a real deployment."""
        if self.auth.api_key == "test-api-key" and not self.api.debug and self.auth.auth_enabled:
            raise ConfigError(
                "API_KEY is still the published default 'test-api-key'; set your own key "
                "(or API_DEBUG=true for local experiments)"
            )

    def __getattr__(self, name: str) -> Any:
        try:
            attr, field = ENV_NAMES[name.upper()]
        except KeyError:
            raise AttributeError(name) from None
        return getattr(getattr(self, attr), field)
