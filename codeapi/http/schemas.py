"""Wire models for the LibreChat contract. Unknown fields are ignored everywhere (LibreChat sends extras)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from codeapi.sessions.owners import claimed_owner

ENTITY_ID = Annotated[str, Field(max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
# A user id a body claims, read as the owner id it names: never the owner id of a token's user.
CLAIMED_USER_ID = Annotated[str | None, AfterValidator(claimed_owner)]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FileRefIn(WireModel):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    storage_session_id: str | None = None
    session_id: str | None = None
    resource_id: str | None = None
    kind: str | None = None
    version: int | str | None = None
    entity_id: str | None = None

    @model_validator(mode="after")
    def needs_a_session(self) -> FileRefIn:
        if not (self.storage_session_id or self.session_id):
            raise ValueError("file reference needs storage_session_id or session_id")
        return self

    @property
    def owner_session_id(self) -> str:
        return self.storage_session_id or self.session_id or ""


class ExecBody(WireModel):
    lang: str
    code: str
    args: list[str] = []
    user_id: CLAIMED_USER_ID = None
    files: list[FileRefIn] | None = None
    session_id: str | None = None
    entity_id: ENTITY_ID | None = None
    timeout: int | None = Field(None, ge=1000, le=300000, description="milliseconds")
    # With X-CodeAPI-Expected-Profile: stateful, the workspace to run in (LibreChat: v2:user:<32 hex>).
    runtime_session_hint: str | None = Field(None, min_length=1, max_length=512)

    @field_validator("args", mode="before")
    @classmethod
    def args_as_strings(cls, value: Any) -> list[str]:
        """The reference accepts any JSON here: a string is one argument, a list becomes strings."""
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return [item if isinstance(item, str) else str(item) for item in value]
        return [value if isinstance(value, str) else str(value)]


class FileRefOut(WireModel):
    id: str
    name: str
    path: str
    storage_session_id: str
    session_id: str
    modified_from: dict[str, str] | None = None
    inherited: bool | None = None  # True only: a read-only input echoed unchanged (contract §4.4)


class ArtifactDeliveryOut(WireModel):
    """Present only when some of a run's new or changed files could not be stored (contract §9.3)."""

    code: Literal["artifact_delivery_failed"] = "artifact_delivery_failed"
    status: Literal["partial", "failed"]
    attempted: int
    delivered: int
    failed: int


class RunOut(WireModel):
    """How the program ran, the official server's ``run`` without its copies of stdout and stderr.
    Milliseconds and bytes; null where nothing measured it (docs/programmatic.md, "What the end reports")."""

    status: str | None  # TO time limit, SG signal (out of memory too), OL / EL output cap, XX stopped; null: ended
    code: int | None
    signal: str | None
    message: str | None
    wall_time: int | None
    cpu_time: int | None
    memory: int | None


class ExecResponse(WireModel):
    session_id: str
    stdout: str
    stderr: str
    files: list[FileRefOut]
    deleted_files: list[str]  # inputs the run removed, by the names they were staged under in /mnt/data
    artifact_delivery: ArtifactDeliveryOut | None = None
    run: RunOut
    language: str
    version: str | None
    runtime_session_id: str | None = None  # stateful profile: the workspace the call ran in
    runtime_status: Literal["new", "reused"] | None = None


class UploadedFileOut(WireModel):
    fileId: str  # noqa: N815 - wire name
    filename: str


class UploadResponse(WireModel):
    message: str
    storage_session_id: str
    session_id: str
    files: list[UploadedFileOut]


class BatchFileOut(WireModel):
    status: str
    filename: str
    fileId: str | None = None  # noqa: N815 - wire name
    error: str | None = None


class BatchUploadResponse(WireModel):
    message: str
    storage_session_id: str
    session_id: str
    files: list[BatchFileOut]
    succeeded: int
    failed: int


class ObjectInfo(WireModel):
    """One file's metadata, the official server's fields (contract §5.4, §9.4)."""

    name: str  # "<session_id>/<file_id>", as the listings name it
    version: str | None = None  # an object-store version id: files here have none
    originalFilename: str  # noqa: N815 - wire name
    size: int
    lastModified: str  # noqa: N815 - wire name
    etag: str
    contentType: str  # noqa: N815 - wire name
    readOnly: bool  # noqa: N815 - wire name
