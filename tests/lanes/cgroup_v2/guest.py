"""The cgroup-v2 guest as the lane uses it: `scripts/guest` for the machine, ssh for everything inside.

The service runs in the guest as the README says (`scripts/install && .venv/bin/codeapi serve` in
/srv/codeapi), inside a transient systemd unit with ``Delegate=yes`` so it owns its cgroup subtree, as
on any systemd host. What is left behind is read in the guest by one small Python program over ssh.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx

ROOT = Path(__file__).resolve().parents[3]
GUEST_SCRIPT = ROOT / "scripts" / "guest"
GUEST_NAME = "lane"
API_PORT = 8000
COMPOSE_PORT = 8001  # the compose stack's API in the guest (test_stack.py)
UNIT = "codeapi"
PROJECT = "/srv/codeapi"
API_KEY = "cgroup-v2-lane-key-0123456789"
SANDBOX_UID = 1001
# Sandbox uids of any API instance on the guest (several instances take 64 each from SANDBOX_UID on).
SANDBOX_UIDS = 16 * 64
SANDBOX_BASE_DIR = "/var/lib/code-interpreter/sandboxes"
# Limits small enough that every bomb ends quickly under software emulation; time is generous because
# everything in the guest runs 10-30x slower than on the host.
SERVICE_ENV = {
    "API_KEY": API_KEY,
    "MAX_MEMORY_MB": "256",
    "MAX_PROCESSES": "32",
    "MAX_OUTPUT_KB": "16",
    "SANDBOX_WORKDIR_SIZE_MB": "64",
    "SANDBOX_UID": str(SANDBOX_UID),
    "SANDBOX_BASE_DIR": SANDBOX_BASE_DIR,
}
README_COMMAND = "scripts/install && exec .venv/bin/codeapi serve"
SERVE_COMMAND = "exec .venv/bin/codeapi serve"
INSTALL_TIMEOUT_S = 40 * 60
# Another checkout whose code the lane runs in the guest instead of this one (e.g. a branch in progress).
CHECKOUT = os.environ.get("CGROUP_V2_LANE_CHECKOUT", "")
RESTART_TIMEOUT_S = 10 * 60

# Runs in the guest: everything of the service's that could outlive a run, as JSON. Job directories
# are the entries of SANDBOX_BASE_DIR, or of an instance's slot directory in it (instance-<n>).
LEFTOVERS = r"""
import json, os, subprocess, sys
uid_low, uid_count, base_dir, unit = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
group = subprocess.run(["systemctl", "show", "-P", "ControlGroup", unit], capture_output=True, text=True).stdout.strip()
cgroups = {}
if group and os.path.isdir("/sys/fs/cgroup" + group):
    top = "/sys/fs/cgroup" + group
    for path, dirs, _ in os.walk(top):
        with open(os.path.join(path, "cgroup.procs")) as procs:
            cgroups[os.path.relpath(path, top)] = len(procs.read().split())
processes = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        status = open(f"/proc/{pid}/status").read()
        cgroup = open(f"/proc/{pid}/cgroup").read().strip()
        command = open(f"/proc/{pid}/cmdline").read().replace("\0", " ")[:60]
    except OSError:
        continue
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    if uid_low <= uid < uid_low + uid_count:
        processes.append(f"{pid} {command!r} in {cgroup}")
job_dirs = []
for entry in sorted(os.listdir(base_dir)) if os.path.isdir(base_dir) else []:
    if entry.startswith("."):
        continue
    if entry.startswith("instance-"):
        job_dirs += [f"{entry}/{job}" for job in sorted(os.listdir(os.path.join(base_dir, entry))) if not job.startswith(".")]
    else:
        job_dirs.append(entry)
mounts = [line.split()[1] for line in open("/proc/mounts") if line.split()[1].startswith(base_dir + "/")]
print(json.dumps({"unit_cgroup": group, "cgroups": cgroups, "processes": processes, "job_dirs": job_dirs,
                  "mounts": mounts}))
"""
WARM = ("repl-", "zygote")  # warm Python sandboxes and their zygote stay up between calls by design
WARM_PROCESSES = 2  # an idle warm sandbox runs its init (catatonit) and the worker as its sandbox uid


def warm(name: str) -> bool:
    return any(marker in name for marker in WARM)


@dataclass
class Leftovers:
    unit_cgroup: str
    cgroups: dict[str, int]  # path below the service unit's cgroup -> number of processes in it
    processes: list[str]  # processes with a sandbox uid: "pid 'command' in cgroup"
    job_dirs: list[str]
    mounts: list[str]

    def since(self, idle: Leftovers) -> dict[str, list[str]]:
        """What is here now and was not when the service was idle, but for warm sandboxes (which come
        and go: one is handed to a session and another warmed), each still running only its init and
        worker as the sandbox's uid."""
        return {
            "job cgroups": [path for path in self.cgroups if path not in idle.cgroups and not warm(path)],
            "crowded warm sandboxes": sorted(
                {cgroup for cgroup in self.sandbox_cgroups() if self.sandbox_cgroups().count(cgroup) > WARM_PROCESSES}
            ),
            "sandbox processes outside warm sandboxes": [
                entry for entry in self.processes if not warm(entry.rsplit(" in ", 1)[-1])
            ],
            "job dirs": [name for name in self.job_dirs if name not in idle.job_dirs and not warm(name)],
            "mounts": [point for point in self.mounts if point not in idle.mounts and not warm(point)],
        }

    def sandbox_cgroups(self) -> list[str]:
        """The cgroup of each process with a sandbox uid."""
        return [entry.rsplit(" in ", 1)[-1] for entry in self.processes]

    def anything(self) -> dict[str, list[str]]:
        """Everything at all: what must be gone once the service has stopped."""
        return {
            "service cgroups": sorted(self.cgroups),
            "sandbox processes": self.processes,
            "job dirs": self.job_dirs,
            "mounts": self.mounts,
        }


class Guest:
    """One running guest (scripts/guest start), reached through its 127.0.0.1 port forwards."""

    def __init__(self, name: str = GUEST_NAME) -> None:
        self.env = {**os.environ, "GUEST_NAME": name, "GUEST_FORWARDS": f"{API_PORT} {COMPOSE_PORT}"}

    def script(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(GUEST_SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self) -> None:
        """Build (cached) and boot; the build's and boot's progress go to the lane's log on failure."""
        result = self.script("start")
        if result.returncode != 0:
            raise RuntimeError(f"scripts/guest start failed:\n{result.stderr[-4000:]}")
        if CHECKOUT:
            synced = self.script("sync", CHECKOUT, timeout=600)
            if synced.returncode != 0:
                raise RuntimeError(f"scripts/guest sync {CHECKOUT} failed:\n{synced.stderr[-4000:]}")

    def stop(self) -> None:
        self.script("stop", timeout=120)

    def ssh(self, command: str, timeout: float = 600, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(GUEST_SCRIPT), "ssh", command],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def api_url(self, guest_port: int = API_PORT) -> str:
        port = self.script("port", str(guest_port), timeout=30).stdout.strip()
        return f"http://127.0.0.1:{port}"

    def start_service(self, command: str) -> None:
        """The service as a transient unit with its own delegated cgroup subtree, started from PROJECT."""
        settings = " ".join(f"--setenv={name}={value}" for name, value in SERVICE_ENV.items())
        self.ssh(f"systemctl stop {UNIT}; systemctl reset-failed {UNIT}", timeout=120)
        result = self.ssh(
            f"systemd-run --unit={UNIT} --property=Delegate=yes --property=KillMode=mixed "
            f"--working-directory={PROJECT} {settings} /bin/sh -c '{command}'",
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"systemd-run failed: {result.stderr}")

    def stop_service(self) -> None:
        self.ssh(f"systemctl stop {UNIT}", timeout=120)

    def service_log(self, lines: int = 60) -> str:
        return self.ssh(f"journalctl -u {UNIT} -n {lines} --no-pager -o cat", timeout=60).stdout

    def wait_ready(self, url: str, timeout_s: float) -> None:
        """Until GET /health answers; fails with the service's own last words if it stops first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            state = self.ssh(f"systemctl is-active {UNIT}", timeout=60).stdout.strip()
            if state not in ("active", "activating"):
                raise RuntimeError(f"the service stopped ({state}) before it answered; its log:\n{self.service_log()}")
            time.sleep(5)
        raise RuntimeError(f"the service did not answer within {timeout_s:.0f} s; its log:\n{self.service_log()}")

    def leftovers(self) -> Leftovers:
        result = self.ssh(
            f"python3 - {SANDBOX_UID} {SANDBOX_UIDS} {SANDBOX_BASE_DIR} {UNIT}", stdin=LEFTOVERS, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"reading leftovers in the guest failed: {result.stderr}")
        return Leftovers(**json.loads(result.stdout))


class GuestDocker:
    """The guest's docker, for a compose stack run there (tests/lanes/container/stack.py's DockerMachine)."""

    checkout = PurePosixPath(PROJECT)
    workdir = PurePosixPath("/root/compose-lane")

    def __init__(self, guest: Guest) -> None:
        self.guest = guest

    def run(
        self, command: list[str], timeout: float, env: dict[str, str], cwd: PurePosixPath | None = None
    ) -> subprocess.CompletedProcess[str]:
        settings = [f"{name}={value}" for name, value in env.items()]
        line = shlex.join(["env", *settings, *command] if settings else command)
        result = self.guest.ssh(f"cd {shlex.quote(str(cwd or self.checkout))} && {line}", timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"in the guest: {line[:300]} failed ({result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        return result

    def write(self, path: PurePosixPath, text: str) -> None:
        result = self.guest.ssh(
            f"mkdir -p {shlex.quote(str(path.parent))} && cat > {shlex.quote(str(path))}", stdin=text
        )
        if result.returncode != 0:
            raise RuntimeError(f"writing {path} in the guest failed: {result.stderr}")

    def load_images(self, *images: str) -> None:
        result = self.guest.script("load-images", *images)
        if result.returncode != 0:
            raise RuntimeError(f"scripts/guest load-images failed:\n{result.stderr[-4000:]}")
