"""Settings groups. Each variable of the configuration guide is declared exactly once, here.

A group owns the variables that share its ``env_prefix``; a variable outside the prefix carries
a full ``validation_alias`` (pydantic-settings applies no prefix to aliased fields).
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from codeapi.hostnames import allowlist_entry

CommaList = Annotated[list[str], NoDecode]
ExecutionProfile = Literal["default", "stateful"]
AuthProvider = Literal["legacy-api-key", "librechat-jwt", "both"]
JwtAlgorithm = Literal["EdDSA", "RS256"]


def shared_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )


def alias(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


def split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


# When false, groups read only explicit values: tests stay independent of the machine's environment.
READ_ENVIRONMENT: ContextVar[bool] = ContextVar("READ_ENVIRONMENT", default=True)


class Group(BaseSettings):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if not READ_ENVIRONMENT.get():
            return (init_settings, dotenv_settings)
        return (init_settings, env_settings, dotenv_settings, file_secret_settings)


class ApiSettings(Group):
    model_config = shared_config("API_")

    port: int = Field(8000, ge=1, le=65535, validation_alias=alias("PORT"))
    # Where the API listens when that is not PORT: in the container PORT is the host port compose publishes.
    listen_port: int | None = Field(None, ge=1, le=65535, validation_alias=alias("API_PORT"))
    host: str = "0.0.0.0"
    debug: bool = False
    reload: bool = False
    # The X-CodeAPI-Expected-Profile values this deployment serves (contract §9.2). A request without
    # the header is served the default way, so "default" is always one of them.
    execution_profiles: Annotated[list[ExecutionProfile], NoDecode] = Field(
        default_factory=lambda: list[ExecutionProfile](["default", "stateful"]),
        validation_alias=alias("CODEAPI_EXECUTION_PROFILES"),
    )

    _split = field_validator("execution_profiles", mode="before")(split_commas)

    @field_validator("execution_profiles")
    @classmethod
    def default_is_served(cls, profiles: list[ExecutionProfile]) -> list[ExecutionProfile]:
        if "default" not in profiles:
            raise ValueError("must include default: requests without X-CodeAPI-Expected-Profile are served that way")
        return profiles


class SslSettings(Group):
    model_config = shared_config("SSL_")

    enable_https: bool | None = Field(None, validation_alias=alias("ENABLE_HTTPS"))
    certs_path: str = "./ssl"
    cert_file: Path = Path("/app/ssl/fullchain.pem")
    key_file: Path = Path("/app/ssl/privkey.pem")
    ca_certs: Path | None = None

    @field_validator("enable_https", mode="before")
    @classmethod
    def auto_means_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return None
        return value

    @property
    def https_active(self) -> bool:
        """HTTPS when asked for; when unset ("auto"), only if both files exist."""
        if self.enable_https is None:
            return self.cert_file.is_file() and self.key_file.is_file()
        return self.enable_https

    @model_validator(mode="after")
    def files_exist_when_forced(self) -> SslSettings:
        if self.enable_https and not (self.cert_file.is_file() and self.key_file.is_file()):
            raise ValueError(
                f"ENABLE_HTTPS=true but SSL_CERT_FILE ({self.cert_file}) or SSL_KEY_FILE "
                f"({self.key_file}) does not exist"
            )
        return self


class AuthSettings(Group):
    model_config = shared_config("")

    api_key: str = Field("test-api-key", min_length=1, validation_alias=alias("API_KEY"))
    api_keys: CommaList = Field(default_factory=list, validation_alias=alias("API_KEYS"))
    master_api_key: str | None = Field(None, validation_alias=alias("MASTER_API_KEY"))
    auth_enabled: bool = Field(True, validation_alias=alias("AUTH_ENABLED"))
    # Bearer JWTs that current LibreChat mints per user (its CODEAPI_JWT_ENABLED), verified with the public
    # half of its CODEAPI_JWT_PRIVATE_KEY: the official verifier's names, meanings and defaults (§9.1).
    # Unset provider: API keys, and tokens as soon as a verification key is configured.
    auth_provider: AuthProvider | None = Field(None, validation_alias=alias("CODEAPI_AUTH_PROVIDER"))
    jwt_public_key: str | None = Field(None, validation_alias=alias("CODEAPI_JWT_PUBLIC_KEY"))
    jwt_public_key_file: Path | None = Field(None, validation_alias=alias("CODEAPI_JWT_PUBLIC_KEY_FILE"))
    jwt_kid: str | None = Field(None, min_length=1, validation_alias=alias("CODEAPI_JWT_KID"))
    jwt_jwks_json: str | None = Field(None, validation_alias=alias("CODEAPI_JWT_JWKS_JSON"))
    jwt_public_keys_dir: Path | None = Field(None, validation_alias=alias("CODEAPI_JWT_PUBLIC_KEYS_DIR"))
    # Ours: pins the algorithm of CODEAPI_JWT_PUBLIC_KEY(_FILE); unset, the key's type decides.
    jwt_algorithm: JwtAlgorithm | None = Field(None, validation_alias=alias("CODEAPI_JWT_ALGORITHM"))
    jwt_allowed_algs: Annotated[list[JwtAlgorithm], NoDecode] = Field(
        default_factory=lambda: list[JwtAlgorithm](["EdDSA", "RS256"]),
        min_length=1,
        validation_alias=alias("CODEAPI_JWT_ALLOWED_ALGS"),
    )
    jwt_issuer: str = Field("librechat", min_length=1, validation_alias=alias("CODEAPI_JWT_ISSUER"))
    jwt_audience: str = Field("codeapi", min_length=1, validation_alias=alias("CODEAPI_JWT_AUDIENCE"))
    jwt_max_ttl_seconds: int = Field(300, ge=1, le=300, validation_alias=alias("CODEAPI_JWT_MAX_TTL_SECONDS"))
    jwt_single_tenant_id: str = Field("legacy", min_length=1, validation_alias=alias("CODEAPI_JWT_SINGLE_TENANT_ID"))
    tenant_isolation_strict: bool = Field(False, validation_alias=alias("CODEAPI_TENANT_ISOLATION_STRICT"))

    _split = field_validator("api_keys", "jwt_allowed_algs", mode="before")(split_commas)

    @field_validator("auth_provider", mode="before")
    @classmethod
    def no_provider_none(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() == "":
            return None
        if value == "none":  # the official server's unauthenticated mode: ours has its own switch
            raise ValueError("'none' is not offered here: AUTH_ENABLED=false opens the API (trusted networks only)")
        return value

    @property
    def valid_keys(self) -> tuple[str, ...]:
        return (self.api_key, *self.api_keys)

    @property
    def jwt_key_text(self) -> str | None:
        """PEM or JWK JSON, inline (with literal \\n allowed, as in LibreChat's variable) or from a file."""
        if self.jwt_public_key and self.jwt_public_key.strip():
            return self.jwt_public_key.replace("\\n", "\n").strip()
        if self.jwt_public_key_file is not None:
            return self.jwt_public_key_file.read_text().strip()
        return None

    @property
    def jwt_keys_configured(self) -> bool:
        return any((self.jwt_key_text, self.jwt_jwks_json and self.jwt_jwks_json.strip(), self.jwt_public_keys_dir))

    @property
    def api_keys_accepted(self) -> bool:
        """CODEAPI_AUTH_PROVIDER=librechat-jwt: a Bearer token is the only credential of the user routes."""
        return self.auth_provider != "librechat-jwt"

    @property
    def jwt_accepted(self) -> bool:
        return self.auth_provider != "legacy-api-key" and self.jwt_keys_configured

    @model_validator(mode="after")
    def key_sources_exist(self) -> AuthSettings:
        if self.jwt_public_key_file is not None and not self.jwt_public_key_file.is_file():
            raise ValueError(f"CODEAPI_JWT_PUBLIC_KEY_FILE ({self.jwt_public_key_file}) does not exist")
        if self.jwt_public_keys_dir is not None and not self.jwt_public_keys_dir.is_dir():
            raise ValueError(f"CODEAPI_JWT_PUBLIC_KEYS_DIR ({self.jwt_public_keys_dir}) is not a directory")
        if self.auth_provider in ("librechat-jwt", "both") and not self.jwt_keys_configured:
            raise ValueError(
                f"CODEAPI_AUTH_PROVIDER={self.auth_provider} needs a verification key: CODEAPI_JWT_JWKS_JSON, "
                "CODEAPI_JWT_PUBLIC_KEY(_FILE) or CODEAPI_JWT_PUBLIC_KEYS_DIR"
            )
        return self


class RedisSettings(Group):
    model_config = shared_config("REDIS_")

    host: str = "localhost"
    port: int = Field(6379, ge=1, le=65535)
    password: str | None = None
    db: int = Field(0, ge=0)
    url: str | None = None
    max_connections: int = Field(20, ge=1)
    socket_timeout: float = Field(5, gt=0)
    socket_connect_timeout: float = Field(5, gt=0)

    @property
    def configured(self) -> bool:
        """Redis is used as soon as REDIS_URL or REDIS_HOST is set explicitly."""
        return bool(self.url) or "host" in self.model_fields_set

    def get_url(self) -> str:
        if self.url:
            return self.url
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"


class S3Settings(Group):
    model_config = shared_config("S3_")

    endpoint: str = "localhost:3900"
    access_key: str | None = "test-access-key"
    secret_key: str | None = "test-secret-key"
    secure: bool = False
    bucket: str = Field("code-interpreter-files", min_length=3, max_length=63)
    region: str = "garage"

    @field_validator("endpoint")
    @classmethod
    def endpoint_has_no_scheme(cls, value: str) -> str:
        if "://" in value:
            raise ValueError("S3_ENDPOINT is host:port without a scheme (use S3_SECURE for https)")
        return value

    @field_validator("access_key", "secret_key", mode="before")
    @classmethod
    def empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def keys_come_in_pairs(self) -> S3Settings:
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("S3_ACCESS_KEY and S3_SECRET_KEY must be set together (or both left empty)")
        return self

    @property
    def configured(self) -> bool:
        """S3 is used as soon as S3_ENDPOINT is set explicitly."""
        return "endpoint" in self.model_fields_set

    @property
    def endpoint_url(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.endpoint}"


class SandboxSettings(Group):
    model_config = shared_config("SANDBOX_")

    nsjail_binary: str = Field("nsjail", validation_alias=alias("NSJAIL_BINARY"))
    base_dir: Path = Path("/var/lib/code-interpreter/sandboxes")
    runtime_dir: Path = Path("/opt/codeapi")
    tmpfs_size_mb: int = Field(100, ge=1, le=16384)
    workdir_size_mb: int = Field(1024, ge=16, le=1048576)
    ttl_minutes: int = Field(5, ge=1)
    cleanup_interval_minutes: int = Field(5, ge=1)
    uid: int = Field(1001, ge=1, le=2**31 - 1)


class LimitsSettings(Group):
    model_config = shared_config("MAX_")

    execution_time: int = Field(120, ge=1, le=3600)
    memory_mb: int = Field(512, ge=32, le=65536)
    file_size_mb: int = Field(100, ge=1, le=10240)
    files_per_session: int = Field(300, ge=1, le=100000)
    output_files: int = Field(10, ge=0, le=10000)
    filename_length: int = Field(255, ge=1, le=4096)
    output_kb: int = Field(64, ge=1, le=65536)
    processes: int = Field(64, ge=4, le=4096)
    ptc_pause_seconds: int = Field(300, ge=1, le=3600)  # a paused programmatic run waits this long


class SessionSettings(Group):
    model_config = shared_config("SESSION_")

    ttl_hours: float = Field(24, gt=0)
    cleanup_interval_minutes: float = Field(60, gt=0)
    enable_orphan_s3_cleanup: bool = Field(True, validation_alias=alias("ENABLE_ORPHAN_S3_CLEANUP"))


class PoolSettings(Group):
    model_config = shared_config("SANDBOX_POOL_")

    enabled: bool = True
    warmup_on_startup: bool = True
    py: int = Field(2, ge=0, le=256)
    parallel_batch: int = Field(5, ge=1, le=64)
    replenish_interval: float = Field(2, gt=0)
    exhaustion_trigger: bool = True


class ReplSettings(Group):
    model_config = shared_config("REPL_")

    enabled: bool = True
    warmup_timeout_seconds: float = Field(15, gt=0)


class StateSettings(Group):
    model_config = shared_config("STATE_")

    persistence_enabled: bool = True
    ttl_seconds: int = Field(7200, ge=1)
    capture_on_error: bool = False
    max_redis_size_mb: int = Field(100, ge=1)
    archive_enabled: bool = True
    archive_after_seconds: int = Field(3600, ge=1)
    archive_ttl_days: float = Field(1, gt=0)
    archive_check_interval_seconds: int = Field(300, ge=1)


class RuntimeSessionSettings(Group):
    """Stateful runtime sessions (contract §9.2): the official server's lifetimes and checkpoint cap."""

    model_config = shared_config("RUNTIME_SESSION_")

    idle_seconds: int = Field(1800, ge=1)  # unused this long, the next call starts a new workspace
    max_age_seconds: int = Field(8 * 3600, ge=1)  # older than this, likewise
    max_per_user: int = Field(5, ge=1, le=1000)  # a user's next one reclaims their least recently used
    checkpoint_max_mb: int = Field(512, ge=1, le=65536)  # a workspace over this is not kept (a note says so)


class SecuritySettings(Group):
    model_config = shared_config("")

    enable_network_isolation: bool = Field(True, validation_alias=alias("ENABLE_NETWORK_ISOLATION"))
    enable_filesystem_isolation: bool = Field(True, validation_alias=alias("ENABLE_FILESYSTEM_ISOLATION"))


class EgressSettings(Group):
    model_config = shared_config("SANDBOX_EGRESS_")

    enable_sandbox_network: bool = Field(False, validation_alias=alias("ENABLE_SANDBOX_NETWORK"))
    port: int = Field(18443, ge=1, le=65535)
    allowlist: CommaList = Field(default_factory=list)
    skill_deps_path: Path = Field(Path("/opt/skill-deps"), validation_alias=alias("SKILL_DEPS_PATH"))
    # Ours: each run's budget through the proxy, and fixed addresses for names (mirrors, tests).
    max_connections: int = Field(64, ge=1)
    max_mb: int = Field(1024, ge=1)
    hosts: dict[str, list[str]] = Field(default_factory=dict)

    _split = field_validator("allowlist", mode="before")(split_commas)

    @field_validator("allowlist")
    @classmethod
    def host_names_only(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            allowlist_entry(entry)  # raises ValueError, which pydantic reports with the variable's name
        return entries


class LogSettings(Group):
    model_config = shared_config("LOG_")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["json", "text"] = "json"
    file: Path | None = None
    max_size_mb: int = Field(100, ge=1)
    backup_count: int = Field(5, ge=0)
    enable_access_logs: bool = Field(False, validation_alias=alias("ENABLE_ACCESS_LOGS"))
    enable_security_logs: bool = Field(True, validation_alias=alias("ENABLE_SECURITY_LOGS"))

    @field_validator("level", mode="before")
    @classmethod
    def upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("format", mode="before")
    @classmethod
    def lower_format(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class DevSettings(Group):
    model_config = shared_config("")

    enable_cors: bool = Field(False, validation_alias=alias("ENABLE_CORS"))
    cors_origins: CommaList = Field(default_factory=list, validation_alias=alias("CORS_ORIGINS"))
    enable_docs: bool = Field(True, validation_alias=alias("ENABLE_DOCS"))

    _split = field_validator("cors_origins", mode="before")(split_commas)


class StorageSettings(Group):
    model_config = shared_config("")

    data_dir: Path = Field(Path("/var/lib/code-interpreter/data"), validation_alias=alias("DATA_DIR"))
