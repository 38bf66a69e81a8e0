"""The compose stack of docker-compose.yml, built by the host's Docker and run by it (the container lane)
or by the cgroup-v2 guest's (its images loaded there; tests/lanes/cgroup_v2/test_stack.py).

Everything is created on demand and cached on the machine: dockerd is started when it is not running,
the Debian base image is made with mmdebstrap once, and docker's layer cache keeps the built images,
so only the first run pays for the 13 runtimes. Each stack gets its own compose project (its own
bridge network and volumes); on the host it publishes the API on a free 127.0.0.1 port only.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path, PurePosixPath
from typing import Protocol

import httpx

ROOT = Path(__file__).resolve().parents[3]
BASE_IMAGE = "codeapi-base:bookworm"
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
DOCKERD_START_TIMEOUT_S = 60
DOCKERD_LOG = Path("/var/log/codeapi-lane-dockerd.log")
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


def ensure_dockerd(log: Path = DOCKERD_LOG) -> None:
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


def project_resources(machine: DockerMachine, project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes labelled with a compose project."""
    label = f"label=com.docker.compose.project={project}"
    listings = {
        "containers": ["docker", "ps", "--all", "--quiet", "--filter", label],
        "networks": ["docker", "network", "ls", "--quiet", "--filter", label],
        "volumes": ["docker", "volume", "ls", "--quiet", "--filter", label],
    }
    return {kind: machine.run(command, 120, {}).stdout.split() for kind, command in listings.items()}


def remove_stale_stacks(machine: DockerMachine) -> None:
    """Remove what a lane run that died before its teardown left (its project names its pid)."""
    listing = ["docker", "ps", "--all", "--format", '{{.Label "com.docker.compose.project"}}']
    for project in set(machine.run(listing, 120, {}).stdout.split()):
        owner = project.removeprefix(LANE_PREFIX)
        if project.startswith(LANE_PREFIX) and owner.isdigit() and not Path(f"/proc/{owner}").exists():
            for kind, ids in project_resources(machine, project).items():
                if ids:
                    machine.run(["docker", *REMOVERS[kind], *ids], 120, {})


# Runs where docker runs: the command lines of the process whose command line is argv[1] (hex), as
# their memory (v1) or unified (v2) cgroup lines, polled for up to argv[2] seconds; printed as JSON.
CGROUPS_OF = r"""
import json, os, sys, time
wanted, deadline = bytes.fromhex(sys.argv[1]), time.monotonic() + float(sys.argv[2])
found = []
while not found and time.monotonic() < deadline:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if open(f"/proc/{pid}/cmdline", "rb").read() == wanted:
                lines = open(f"/proc/{pid}/cgroup").read().splitlines()
                found = [line for line in lines if ":memory:" in line or line.startswith("0::")]
                break
        except OSError:
            continue
    time.sleep(0.2)
print(json.dumps(found))
"""


class DockerMachine(Protocol):
    """Where a compose stack runs: this host, or the cgroup-v2 guest over ssh."""

    checkout: PurePosixPath  # this project as that machine sees it
    workdir: PurePosixPath  # a directory of the stack's own there

    def run(self, command: list[str], timeout: float, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Run a command there (``env`` added to its environment); raise with its output when it fails."""

    def write(self, path: PurePosixPath, text: str) -> None: ...


class ThisHost:
    def __init__(self, workdir: Path) -> None:
        self.checkout = PurePosixPath(ROOT)
        self.workdir = PurePosixPath(workdir)

    def run(self, command: list[str], timeout: float, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return sh(command, timeout=timeout, env={**os.environ, **env}, cwd=ROOT)

    def write(self, path: PurePosixPath, text: str) -> None:
        Path(path).write_text(text)


class ComposeStack:
    """docker-compose.yml as one compose project of its own (own bridge network and volumes) on a
    machine, with the API published at ``published`` there and reached by the tests at ``url``."""

    def __init__(self, machine: DockerMachine, settings: dict[str, str], published: str, url: str) -> None:
        self.machine = machine
        self.project = f"{LANE_PREFIX}{os.getpid()}"
        self.url = url
        self.api_key = secrets.token_urlsafe(24)
        values = {
            "API_KEY": self.api_key,
            "PORT": published.rsplit(":", 1)[-1],
            "S3_ACCESS_KEY": "lane-access",
            "S3_SECRET_KEY": secrets.token_urlsafe(24),
            "SSL_CERTS_PATH": str(machine.workdir / "ssl"),
            **settings,
        }
        machine.run(["mkdir", "-p", str(machine.workdir / "ssl")], timeout=60, env={})
        self.env_file = machine.workdir / "lane.env"
        machine.write(self.env_file, "".join(f"{key}={value}\n" for key, value in values.items()))
        # PORT (in the env file) stays what an operator sets, so the API inside still listens on
        # API_PORT 8000 while PORT names another number; the override only narrows the address.
        self.override = machine.workdir / "lane.override.yml"
        machine.write(self.override, f'services:\n  api:\n    ports: !override\n      - "{published}:8000"\n')

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "--project-name", self.project, "--env-file", str(self.env_file)]
        command += ["--file", str(self.machine.checkout / "docker-compose.yml"), "--file", str(self.override), *args]
        env = {"CODEAPI_ENV_FILE": str(self.env_file), "EXTRA_CA_CERTS": extra_ca_certificates()}
        return self.machine.run(command, timeout, env)

    def build(self) -> None:
        self.compose("--progress", "plain", "build", timeout=COMPOSE_TIMEOUT_S)

    def up(self, start_timeout_s: float = API_START_TIMEOUT_S) -> None:
        self.compose("up", "--detach", "--no-build", "--wait", "s3", "redis", timeout=600)
        self.compose("up", "--detach", "--no-build", timeout=600)
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.state("api") not in ("running", "restarting", "created"):
                break
            time.sleep(2)
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
        return project_resources(self.machine, self.project)

    def volume(self, name: str) -> str:
        """The docker name of a volume of docker-compose.yml in this project."""
        return f"{self.project}_{name}"

    def cgroups_of(self, cmdline: bytes, timeout_s: float) -> list[str]:
        """The cgroups, as the machine sees them, of its process whose command line is ``cmdline``."""
        found = self.machine.run(["python3", "-c", CGROUPS_OF, cmdline.hex(), str(timeout_s)], timeout_s + 120, {})
        return list(json.loads(found.stdout))


# The Go build cache of the API container (`go build std`, see docker/entrypoint.sh) costs 1-2 minutes
# at host speed and far more under emulation. An image holding a warmed copy, made on this host once
# per runtime layer, seeds another machine's stack with it.
API_IMAGE = "codeapi:latest"  # docker-compose.yml's image of the api service
GO_CACHE_SEED = "codeapi-gocache-seed:latest"
GO_CACHE_SEED_DIR = "/gocache-seed"
RUNTIME_INPUTS = ("scripts/install", "scripts/sandbox-python.txt", "scripts/toolbox")  # the image's runtime layer


def runtime_layer_key() -> str:
    digest = hashlib.sha256()
    for name in RUNTIME_INPUTS:
        for path in sorted((ROOT / name).rglob("*")) if (ROOT / name).is_dir() else [ROOT / name]:
            if path.is_file():
                digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def go_cache_seed(built: ComposeStack) -> str:
    """An image with a warmed Go cache at GO_CACHE_SEED_DIR, made with ``built``'s image (cached by key)."""
    key = runtime_layer_key()
    inspected = subprocess.run(
        ["docker", "image", "inspect", "--format", '{{index .Config.Labels "codeapi.runtimes"}}', GO_CACHE_SEED],
        capture_output=True,
        text=True,
        check=False,
    )
    if inspected.stdout.strip() == key:
        return GO_CACHE_SEED
    built.compose("run", "--rm", "--no-deps", "api", "true", timeout=COMPOSE_TIMEOUT_S)  # the entrypoint warms it
    volume = built.volume("gocache")
    container = f"{built.project}-seed"
    sh(
        [
            "docker",
            "run",
            "--name",
            container,
            "--volume",
            f"{volume}:/src:ro",
            "--entrypoint",
            "cp",
            API_IMAGE,
            "-a",
            "/src/.",
            GO_CACHE_SEED_DIR,
        ],
        timeout=600,
    )
    try:
        sh(["docker", "commit", "--change", f"LABEL codeapi.runtimes={key}", container, GO_CACHE_SEED])
    finally:
        sh(["docker", "rm", container])
    return GO_CACHE_SEED


def seed_go_cache(stack: ComposeStack, seed: str) -> None:
    """Fill the stack's gocache volume before its first start (the entrypoint then finds it warmed)."""
    volume = stack.volume("gocache")
    labels = ["--label", f"com.docker.compose.project={stack.project}", "--label", "com.docker.compose.volume=gocache"]
    stack.machine.run(["docker", "volume", "create", *labels, volume], 120, {})
    stack.machine.run(
        [
            "docker",
            "run",
            "--rm",
            "--volume",
            f"{volume}:/opt/codeapi/gocache",
            "--entrypoint",
            "cp",
            seed,
            "-a",
            f"{GO_CACHE_SEED_DIR}/.",
            "/opt/codeapi/gocache/",
        ],
        1200,
        {},
    )
