#!/usr/bin/env bash
# Container start: give the API a writable view of its own cgroups, prepare the sandbox host, warm
# the Go cache once (kept if /opt/codeapi/gocache is a volume), then run the command (the API).
set -euo pipefail

# With a private cgroup namespace (compose's `cgroup: private`) /sys/fs/cgroup shows only this
# container's own cgroups, mounted read-only by the runtime. The job cgroups go below them, so the
# container's limits bound every sandbox and no other container's jobs are visible. Remounting a
# mount read-write needs CAP_SYS_ADMIN (and no AppArmor mount rule in the way).
while read -r target options; do
  if [[ ",$options," == *,ro,* ]] && ! mount -o remount,bind,rw "$target"; then
    echo "codeapi: cannot make the cgroup mount $target writable; the container needs cap_add SYS_ADMIN" \
      "and security_opt apparmor=unconfined (docker-compose.yml, docs/deployment.md)" >&2
    exit 1
  fi
done < <(findmnt -rn -t cgroup,cgroup2 -o TARGET,OPTIONS)

/app/.venv/bin/codeapi prepare-host
# Replicas share the gocache volume: the first warms it, the others wait for it and find it done.
mkdir -p /opt/codeapi/gocache
flock /opt/codeapi/gocache /app/.venv/bin/codeapi warm-go-cache
exec "$@"
