"""Start-up without usable cgroups: refused while isolation is on, loudly allowed when it is all off."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from codeapi.cli import main
from codeapi.config.groups import SandboxSettings
from codeapi.errors import SandboxFailure
from codeapi.sandbox import cgroups
from codeapi.sandbox.host import prepare_host
from codeapi.sandbox.workspace import Workspaces
from tests.conftest import ClientFactory

NO_CGROUP_UID = 45001


@pytest.fixture
def no_cgroups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cgroup root with no controllers mounted at all."""
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path / "cgroup")


def test_prepare_host_refuses_when_a_controller_is_missing(no_cgroups: None, tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path / "sandboxes", NO_CGROUP_UID, 1)
    with pytest.raises(SandboxFailure, match="refusing to start: the cgroup v1 'memory' controller is not mounted"):
        prepare_host(SandboxSettings(), workspaces)


def test_prepare_host_reports_when_cgroups_are_optional(no_cgroups: None, tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path / "sandboxes", NO_CGROUP_UID, 1)
    assert prepare_host(SandboxSettings(), workspaces, require_cgroups=False) is None
    assert (workspaces.system_dir / "passwd").is_file()
    workspaces.close()


async def test_api_refuses_to_start_without_cgroups(no_cgroups: None, make_client: ClientFactory) -> None:
    with pytest.raises(SandboxFailure, match="refusing to start"):
        async with make_client(SANDBOX_UID=NO_CGROUP_UID):
            pass


async def test_api_with_isolation_off_runs_without_cgroups_and_warns(
    no_cgroups: None, make_client: ClientFactory
) -> None:
    switches = {"ENABLE_NETWORK_ISOLATION": False, "ENABLE_FILESYSTEM_ISOLATION": False}
    with capture_logs() as logs:
        async with make_client(SANDBOX_UID=NO_CGROUP_UID, **switches) as client:
            body = (await client.post("/exec", json={"lang": "bash", "code": "echo ran"})).json()
    assert body["stdout"] == "ran\n"
    disabled = {log.get("variable") for log in logs if log["event"] == "security.isolation_disabled"}
    assert disabled == {"ENABLE_NETWORK_ISOLATION", "ENABLE_FILESYSTEM_ISOLATION", "cgroups"}


def test_check_host_says_what_is_missing_and_fails(no_cgroups: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-host"]) == 1
    assert "cgroup v1: the cgroup v1 'memory' controller is not mounted" in capsys.readouterr().err


def test_check_host_passes_on_this_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-host"]) == 0
    assert capsys.readouterr().out == "codeapi: this host can serve\n"


def test_serve_refuses_with_one_message_instead_of_starting(
    no_cgroups: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("codeapi: cannot serve: cgroup v1:"), lines
