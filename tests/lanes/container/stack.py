"""The compose stack of docker-compose.yml, deployed as the README's Deployment section says, by the
host's Docker (the container lane) or by the cgroup-v2 guest's (its images loaded there;
tests/lanes/cgroup_v2/test_stack.py).

A stack is an operator's copy of this checkout (as it is at run time) in a directory of its own, whose
name compose takes as the project name (own bridge network and volumes): there `.env` is a copy of
`.env.example` with the documented edits, and the README's `docker compose build` and `docker compose
up -d` run unchanged. Everything else is created on demand and cached on the machine: dockerd is
started when it is not running, the Debian base image is made with mmdebstrap once, and docker's layer
cache keeps the built images, so only the first run pays for the 13 runtimes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
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
# What an operator's copy of the checkout leaves out: what is not the project's (as scripts/guest's sync).
NOT_COPIED = (
    "/.venv", "/.env", "/.git", "/ssl", "__pycache__", "*.egg-info", ".mypy_cache", ".ruff_cache", ".pytest_cache",
    "/bench/results",
)  # fmt: skip
# The configuration guide's "HTTPS Setup", step 1. `-subj` answers the command's questions, and the
# names are what a client that verifies the certificate checks (the guide's own check uses `curl -k`).
MAKE_CERTIFICATE = [
    ["mkdir", "-p", "ssl"],
    ["openssl", "req", "-x509", "-newkey", "rsa:4096", "-nodes", "-out", "ssl/fullchain.pem", "-keyout",
     "ssl/privkey.pem", "-days", "365", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
]  # fmt: skip
HTTPS_SETTINGS = {
    "ENABLE_HTTPS": "true",
    "SSL_CERTS_PATH": "./ssl",
    "SSL_CERT_FILE": "/app/ssl/fullchain.pem",
    "SSL_KEY_FILE": "/app/ssl/privkey.pem",
}


def sh(command: list[str], timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise with its own output, so the lane shows what went wrong."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
        )
    return result  # type: ignore[no-any-return]


def require_tools() -> None:
    missing = [tool for tool in ("docker", "dockerd", "mmdebstrap", "rsync", "openssl") if shutil.which(tool) is None]
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


def edit_env(text: str, values: Mapping[str, str]) -> str:
    """An env file as an operator edits it: each named line, commented out or not, set to its value in
    place (its comment dropped); a name the file lacks is added at the end."""
    missing = dict(values)
    lines = []
    for line in text.splitlines():
        name = re.match(r"#?\s*([A-Z][A-Z0-9_]*)=", line)
        if name and name.group(1) in missing:
            line = f"{name.group(1)}={missing.pop(name.group(1))}"
        lines.append(line)
    lines += [f"{name}={value}" for name, value in missing.items()]
    return "\n".join(lines) + "\n"


def read_env(text: str) -> dict[str, str]:
    """The values an env file sets, as compose and the API read them (unquoted, ` # comments` dropped)."""
    values = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            values[name.strip()] = re.split(r"\s+#", value, maxsplit=1)[0].strip()
    return values


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
    """Remove what a lane run that died before its teardown left (its project names its pid first)."""
    listing = ["docker", "ps", "--all", "--format", '{{.Label "com.docker.compose.project"}}']
    for project in set(machine.run(listing, 120, {}).stdout.split()):
        owner = project.removeprefix(LANE_PREFIX).split("-")[0]
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
    workdir: PurePosixPath  # a directory of the lane's own there

    def run(
        self, command: list[str], timeout: float, env: dict[str, str], cwd: PurePosixPath | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command there (``env`` added to its environment, in ``cwd`` or else the checkout);
        raise with its output when it fails."""

    def write(self, path: PurePosixPath, text: str) -> None: ...


class ThisHost:
    def __init__(self, workdir: Path) -> None:
        self.checkout = PurePosixPath(ROOT)
        self.workdir = PurePosixPath(workdir)

    def run(
        self, command: list[str], timeout: float, env: dict[str, str], cwd: PurePosixPath | None = None
    ) -> subprocess.CompletedProcess[str]:
        return sh(command, timeout=timeout, env={**os.environ, **env}, cwd=cwd or self.checkout)

    def write(self, path: PurePosixPath, text: str) -> None:
        Path(path).write_text(text)


@dataclass(frozen=True)
class ContainerState:
    """One moment of a container, as `docker inspect` tells it."""

    id: str
    status: str  # created, running, restarting, exited, dead
    restarts: int  # by its restart policy
    started_at: str  # tells one run of the container from the next
    pid: int  # its main process on the docker machine; 0 when not running

    def same_run(self, other: ContainerState) -> bool:
        return self.status == other.status == "running" and self.started_at == other.started_at


class ComposeStack:
    """docker-compose.yml deployed on a machine as the README says, in an operator's copy of this checkout
    named after the lane's project: `cp .env.example .env`, the documented edits (API_KEY, S3_SECRET_KEY,
    PORT, the host port published) and ``settings`` (the container lane has none), then `docker compose
    build` and `docker compose up -d`. The tests reach the published port at ``url``."""

    def __init__(
        self, machine: DockerMachine, port: int, url: str, settings: Mapping[str, str] | None = None, name: str = ""
    ) -> None:
        self.machine = machine
        self.project = f"{LANE_PREFIX}{os.getpid()}" + (f"-{name}" if name else "")
        self.directory = machine.workdir / self.project  # compose names the project after it
        self.url = url
        self.verify: ssl.SSLContext | bool = True
        self.api_key = secrets.token_urlsafe(24)
        excluded = [f"--exclude={pattern}" for pattern in NOT_COPIED]
        machine.run(["mkdir", "-p", str(self.directory)], 60, {})
        machine.run(["rsync", "-a", *excluded, f"{machine.checkout}/", f"{self.directory}/"], 300, {})
        machine.run(["cp", ".env.example", ".env"], 60, {}, cwd=self.directory)
        self.settings: dict[str, str] = {}
        documented = {"API_KEY": self.api_key, "S3_SECRET_KEY": secrets.token_urlsafe(24), "PORT": str(port)}
        self.edit_env({**documented, **(settings or {})})

    def edit_env(self, values: Mapping[str, str]) -> None:
        """Set lines of the stack's `.env`; ``settings`` is then what the file says."""
        path = self.directory / ".env"
        text = edit_env(self.machine.run(["cat", str(path)], 60, {}).stdout, values)
        self.machine.write(path, text)
        self.settings = read_env(text)

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`docker compose ...` in the stack's directory (so with its `.env`), as an operator types it; a
        TLS-intercepting proxy's CA is passed the documented way (docs/deployment.md)."""
        env = {"EXTRA_CA_CERTS": extra_ca_certificates()}
        return self.machine.run(["docker", "compose", *args], timeout, env, cwd=self.directory)

    def build(self) -> None:
        self.compose("build", timeout=COMPOSE_TIMEOUT_S)

    def up(self, start_timeout_s: float = API_START_TIMEOUT_S) -> None:
        self.compose("up", "-d", timeout=600)
        self.wait_serving(start_timeout_s)

    def enable_https(self) -> None:
        """The configuration guide's "HTTPS Setup": a certificate made into ./ssl, the four settings in
        `.env`, `docker compose up -d`; the tests then trust that certificate, and only it."""
        for command in MAKE_CERTIFICATE:
            self.machine.run(command, 120, {}, cwd=self.directory)
        self.edit_env(HTTPS_SETTINGS)
        certificate = self.machine.run(["cat", str(self.directory / "ssl" / "fullchain.pem")], 60, {}).stdout
        self.verify = ssl.create_default_context(cadata=certificate)
        self.url = "https://" + self.url.removeprefix("http://")
        self.up()

    def wait_serving(self, timeout_s: float = API_START_TIMEOUT_S) -> None:
        """Until GET /health/ready answers (the warm Python path is up). Fails at once, with the API's log,
        when its container stops or restarts meanwhile: its start-up failed, and a restart policy loops."""
        first = self.api_state()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=5, verify=self.verify).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            now = self.api_state()
            if now.status not in ("created", "running") or now.restarts != first.restarts:
                state = f"{now.status}, {now.restarts} restarts"
                raise RuntimeError(f"the API container stopped or restarted before it served ({state}):\n{self.logs()}")
            time.sleep(2)
        raise RuntimeError(f"the API did not serve within {timeout_s:.0f} s:\n{self.logs()}")

    def api_state(self) -> ContainerState:
        container = self.compose("ps", "--all", "--quiet", "api").stdout.strip()
        fields = "{{.State.Status}} {{.RestartCount}} {{.State.StartedAt}} {{.State.Pid}}"
        inspected = self.machine.run(["docker", "inspect", "--format", fields, container], 60, {}).stdout.split()
        return ContainerState(container, inspected[0], int(inspected[1]), inspected[2], int(inspected[3]))

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "200").stdout

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20")

    def leftovers(self) -> dict[str, list[str]]:
        return project_resources(self.machine, self.project)

    def volume(self, name: str) -> str:
        """The docker name of a volume of docker-compose.yml in this project."""
        return f"{self.project}_{name}"

    def api_containers(self) -> list[str]:
        """The ids of the API's replicas that run."""
        return self.compose("ps", "--quiet", "api").stdout.split()

    def balancer_stats(self) -> list[dict[str, str]]:
        """The balancer's rows for the API's replicas (HAProxy's CSV statistics: svname api1..api32,
        status UP/DOWN/MAINT, addr, stot requests, hrsp_2xx ...), from inside its container."""
        csv = self.compose("exec", "-T", "balancer", "codeapi-balancer", "stats", timeout=60).stdout
        lines = [line for line in csv.splitlines() if line]
        names = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(names, line.split(","), strict=False)) for line in lines[1:]]
        return [row for row in rows if row["pxname"] == "api" and row["svname"].startswith("api")]

    def replicas_up(self) -> list[dict[str, str]]:
        return [row for row in self.balancer_stats() if row["status"] == "UP"]

    def scale(self, replicas: int, timeout_s: float = API_START_TIMEOUT_S) -> float:
        """`docker compose up -d --scale api=N`, until the balancer routes to exactly N ready replicas;
        the seconds that took."""
        began = time.monotonic()
        self.compose("up", "-d", "--no-recreate", "--scale", f"api={replicas}", timeout=600)
        self.wait_replicas(replicas, timeout_s)
        return time.monotonic() - began

    def wait_replicas(self, replicas: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if len(self.replicas_up()) == replicas == len(self.api_containers()):
                    return
            except RuntimeError:  # the balancer is (re)starting
                pass
            time.sleep(1)
        raise RuntimeError(
            f"the balancer did not route to {replicas} ready replicas within {timeout_s:.0f} s:\n"
            f"{self.balancer_stats()}\n{self.logs()}"
        )

    def cgroups_of(self, cmdline: bytes, timeout_s: float) -> list[str]:
        """The cgroups, as the machine sees them, of its process whose command line is ``cmdline``."""
        found = self.machine.run(["python3", "-c", CGROUPS_OF, cmdline.hex(), str(timeout_s)], timeout_s + 120, {})
        return list(json.loads(found.stdout))


def container_leftovers(container_id: str, merged_dir: str) -> dict[str, list[str]]:
    """What of a stopped container is still on this host: processes in its cgroups (its sandboxes
    included: their cgroups are below the container's), its cgroup directories, and mounts of its root
    file system (``merged_dir``, from `docker inspect` while it ran) or naming it."""
    processes = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if container_id in Path(f"/proc/{pid}/cgroup").read_text():
                processes.append(f"{pid} {Path(f'/proc/{pid}/cmdline').read_bytes().replace(bytes(1), b' ').decode()}")
        except OSError:
            continue
    cgroups = []
    for top, directories, _ in os.walk("/sys/fs/cgroup"):
        cgroups += [f"{top}/{name}" for name in directories if container_id in name]
        directories[:] = [name for name in directories if container_id not in name and top.count("/") < 6]
    mounts = [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if container_id in line or (merged_dir and merged_dir in line)
    ]
    return {"processes": processes, "cgroups": cgroups, "mounts": mounts}


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
