"""The compose stack of docker-compose.yml, built and run by the host's Docker for the container lane.

Everything is created on demand and cached on the machine: dockerd is started when it is not running,
the Debian base image is made with mmdebstrap once, and docker's layer cache keeps the built images,
so only the first run pays for the 13 runtimes. Each stack gets its own compose project (its own
bridge network and volumes) and publishes the API on a free 127.0.0.1 port only.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from bench.backends import free_port

ROOT = Path(__file__).resolve().parents[3]
BASE_IMAGE = "codeapi-base:bookworm"
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
DOCKERD_START_TIMEOUT_S = 60
API_START_TIMEOUT_S = 600  # the first start warms the Go build cache inside the sandbox
COMPOSE_TIMEOUT_S = 3600  # a cold build installs all 13 runtimes


def sh(command: list[str], timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise with its own output, so the lane shows what went wrong."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
        )
    return result  # type: ignore[no-any-return]


def require_tools() -> None:
    missing = [tool for tool in ("docker", "dockerd", "mmdebstrap") if shutil.which(tool) is None]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        missing.append("docker compose (v2)")
    if missing:
        raise RuntimeError(f"the container lane needs {', '.join(missing)}: run scripts/install --dev")


def ensure_dockerd(log: Path) -> None:
    """Start dockerd in the background unless one answers (there is no init system to do it)."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return
    with open(log, "ab") as output:
        subprocess.Popen(["dockerd"], stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + DOCKERD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError(f"dockerd did not start, see {log}")


def ensure_base_image() -> None:
    """Debian 12 minbase as a docker image, made offline (no image registry is reachable)."""
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True).returncode == 0:
        return
    sh(
        ["bash", "-o", "pipefail", "-c", f"mmdebstrap --variant=minbase bookworm - | docker import - {BASE_IMAGE}"],
        timeout=900,
    )


def extra_ca_certificates() -> str:
    """The host's own extra CA certificates (e.g. a TLS-intercepting proxy's), for the image build;
    as `$(cat /usr/local/share/ca-certificates/*.crt)` gives them, so a build by hand shares the cache."""
    if not EXTRA_CA_DIR.is_dir():
        return ""
    return "".join(path.read_text() for path in sorted(EXTRA_CA_DIR.glob("*.crt"))).rstrip("\n")


LANE_PREFIX = "codeapi-lane-"
REMOVERS = {"containers": ["rm", "--force"], "networks": ["network", "rm"], "volumes": ["volume", "rm"]}


def project_resources(project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes labelled with a compose project."""
    label = f"label=com.docker.compose.project={project}"
    return {
        "containers": sh(["docker", "ps", "--all", "--quiet", "--filter", label]).stdout.split(),
        "networks": sh(["docker", "network", "ls", "--quiet", "--filter", label]).stdout.split(),
        "volumes": sh(["docker", "volume", "ls", "--quiet", "--filter", label]).stdout.split(),
    }


def remove_stale_stacks() -> None:
    """Remove what a lane run that died before its teardown left (its project names its pid)."""
    listing = sh(["docker", "ps", "--all", "--format", '{{.Label "com.docker.compose.project"}}']).stdout
    for project in set(listing.split()):
        owner = project.removeprefix(LANE_PREFIX)
        if project.startswith(LANE_PREFIX) and owner.isdigit() and not Path(f"/proc/{owner}").exists():
            for kind, ids in project_resources(project).items():
                if ids:
                    sh(["docker", *REMOVERS[kind], *ids])


class ComposeStack:
    def __init__(self, workdir: Path, settings: dict[str, str]) -> None:
        self.workdir = workdir
        self.project = f"{LANE_PREFIX}{os.getpid()}"
        self.port = free_port()
        self.api_key = secrets.token_urlsafe(24)
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "ssl").mkdir(parents=True, exist_ok=True)
        values = {
            "API_KEY": self.api_key,
            "PORT": str(self.port),
            "S3_ACCESS_KEY": "lane-access",
            "S3_SECRET_KEY": secrets.token_urlsafe(24),
            "SSL_CERTS_PATH": str(workdir / "ssl"),
            **settings,
        }
        self.env_file = workdir / "lane.env"
        self.env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        # Published on loopback only; PORT (in the env file) stays what an operator sets, so the API
        # inside still listens on API_PORT 8000 while PORT names another number.
        self.override = workdir / "lane.override.yml"
        self.override.write_text(f'services:\n  api:\n    ports: !override\n      - "127.0.0.1:{self.port}:8000"\n')

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "--project-name", self.project, "--env-file", str(self.env_file)]
        command += ["--file", str(ROOT / "docker-compose.yml"), "--file", str(self.override), *args]
        env = {**os.environ, "CODEAPI_ENV_FILE": str(self.env_file), "EXTRA_CA_CERTS": extra_ca_certificates()}
        return sh(command, timeout=timeout, env=env, cwd=ROOT)

    def build(self) -> None:
        self.compose("--progress", "plain", "build", timeout=COMPOSE_TIMEOUT_S)

    def up(self) -> None:
        self.compose("up", "--detach", "--no-build", "--wait", "s3", "redis", timeout=600)
        self.compose("up", "--detach", "--no-build", timeout=600)
        deadline = time.monotonic() + API_START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.state("api") not in ("running", "restarting", "created"):
                break
            time.sleep(1)
        raise RuntimeError(f"the API did not come up:\n{self.logs()}")

    def state(self, service: str) -> str:
        listing = self.compose("ps", "--all", "--format", "json", service).stdout
        rows = [json.loads(line) for line in listing.splitlines() if line.strip()]
        return str(rows[0]["State"]) if rows else "absent"

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "200").stdout

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20")

    def leftovers(self) -> dict[str, list[str]]:
        return project_resources(self.project)
