"""Privilege: no capabilities, no root, no way into other namespaces, processes or kernel subsystems.

Most denials here come from seccomp (codeapi/sandbox/seccomp/default.kafel), which answers
EPERM rather than killing, so a runtime probing for a feature keeps running.
"""

from __future__ import annotations

import os

from tests.security.conftest import Hostile, execute, with_canary

# Calls a denied system call through libc's syscall() and prints the errno it got.
SYSCALL = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
result = libc.syscall({number}, {args})
print(result, ctypes.get_errno())
"""
EPERM = "-1 1\n"


async def syscall(hostile: Hostile, number: int, args: str = "0, 0, 0, 0") -> str:
    body = await execute(hostile, "py", SYSCALL.format(number=number, args=args))
    stdout: str = body["stdout"]
    return stdout


async def test_no_capabilities_no_new_privs_and_seccomp_on(hostile: Hostile) -> None:
    # Expected: every capability set is empty, no_new_privs is set, a seccomp filter is active.
    body = await execute(hostile, "bash", "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status")
    fields = dict(line.split(":\t") for line in body["stdout"].splitlines())
    assert all(fields[name] == "0000000000000000" for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"))
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"


async def test_runs_as_an_unprivileged_uid_with_root_unmapped(hostile: Hostile) -> None:
    # Expected: the program's uid is its own sandbox uid; root does not exist in its user namespace.
    body = await execute(hostile, "bash", "id -u; cat /proc/self/uid_map")
    uid, mapping = body["stdout"].splitlines()
    assert int(uid) in hostile.uids
    assert mapping.split() == [uid, uid, "1"]


async def test_setuid_binaries_do_not_elevate(hostile: Hostile) -> None:
    # Expected: set-uid root programs in /usr run without privilege (no_new_privs, and their owner
    # is unmapped), so su, mount and passwd cannot become root.
    code = "su -c id root </dev/null; mount -t tmpfs none /tmp; passwd -S root; id -u"
    body = await execute(hostile, "bash", code)
    assert body["stdout"].splitlines()[-1] != "0"
    assert "uid=0" not in body["stdout"]


async def test_unshare_user_namespace_is_denied(hostile: Hostile) -> None:
    # Expected: unshare(2) is EPERM, so no new user namespace (and no root inside one).
    body = await execute(hostile, "bash", "unshare -U -r id")
    assert "unshare failed: Operation not permitted" in body["stderr"]


async def test_clone_with_namespace_flags_is_denied(hostile: Hostile) -> None:
    # Expected: clone(CLONE_NEWUSER|SIGCHLD) is EPERM (clone(2) flags are checked by the filter).
    assert await syscall(hostile, 56, "0x10000000 | 17, 0, 0, 0, 0") == EPERM


async def test_clone3_is_reported_as_unavailable(hostile: Hostile) -> None:
    # Expected: clone3 answers ENOSYS (its flags are out of the filter's reach), which makes
    # libc fall back to clone(2); threads keep working (see test_thread_bomb...).
    assert await syscall(hostile, 435, "0, 0") == "-1 38\n"


async def test_setns_is_denied(hostile: Hostile) -> None:
    # Expected: joining a namespace through a /proc/<pid>/ns descriptor is EPERM.
    assert await syscall(hostile, 308, "os.open('/proc/self/ns/net', os.O_RDONLY), 0") == EPERM


async def test_mount_is_denied(hostile: Hostile) -> None:
    # Expected: mount(2) and the new mount API (fsopen) are EPERM even inside the sandbox's namespace.
    assert await syscall(hostile, 165, "b'none', b'/tmp', b'tmpfs', 0, 0") == EPERM
    assert await syscall(hostile, 430, "b'tmpfs', 0") == EPERM


async def test_chroot_and_pivot_root_are_denied(hostile: Hostile) -> None:
    # Expected: chroot(2) and pivot_root(2) are EPERM.
    assert await syscall(hostile, 161, "b'/tmp'") == EPERM
    assert await syscall(hostile, 155, "b'/tmp', b'/tmp'") == EPERM


async def test_ptrace_is_denied(hostile: Hostile) -> None:
    # Expected: PTRACE_ATTACH to the program's own child is EPERM: no debugging-based escapes.
    code = (
        "import ctypes, os, time\nlibc = ctypes.CDLL(None, use_errno=True)\nchild = os.fork()\n"
        "if child == 0:\n    time.sleep(5)\n    os._exit(0)\n"
        "print(libc.ptrace(16, child, 0, 0), ctypes.get_errno())\nos.kill(child, 9)"
    )
    body = await execute(hostile, "py", code)
    assert body["stdout"] == EPERM


async def test_process_vm_readv_is_denied(hostile: Hostile) -> None:
    # Expected: reading another process's memory directly is EPERM.
    assert await syscall(hostile, 310, "1, 0, 0, 0, 0, 0") == EPERM


async def test_io_uring_is_denied(hostile: Hostile) -> None:
    # Expected: io_uring_setup is EPERM (a large kernel surface code execution does not need).
    assert await syscall(hostile, 425, "8, 0") == EPERM


async def test_bpf_is_denied(hostile: Hostile) -> None:
    # Expected: bpf(2) is EPERM.
    assert await syscall(hostile, 321, "0, 0, 0") == EPERM


async def test_perf_event_open_is_denied(hostile: Hostile) -> None:
    # Expected: perf_event_open is EPERM (side channels, kernel surface).
    assert await syscall(hostile, 298, "0, 0, -1, -1, 0") == EPERM


async def test_userfaultfd_is_denied(hostile: Hostile) -> None:
    # Expected: userfaultfd (a staple of kernel race exploits) is EPERM.
    assert await syscall(hostile, 323, "0") == EPERM


async def test_keyctl_is_denied(hostile: Hostile) -> None:
    # Expected: the kernel keyring is out of reach (keyctl, add_key are EPERM).
    assert await syscall(hostile, 250, "0, 0, 0, 0, 0") == EPERM
    assert await syscall(hostile, 248, "b'user', b'k', b'v', 1, 0") == EPERM


async def test_kernel_modules_and_reboot_are_denied(hostile: Hostile) -> None:
    # Expected: finit_module, kexec_load and reboot are EPERM.
    assert await syscall(hostile, 313, "0, b'', 0") == EPERM
    assert await syscall(hostile, 246, "0, 0, 0, 0") == EPERM
    assert await syscall(hostile, 169, "0xfee1dead, 672274793, 0x1234567, 0") == EPERM


async def test_unsafe_personality_is_denied(hostile: Hostile) -> None:
    # Expected: READ_IMPLIES_EXEC (0x0400000) is EPERM; querying the personality is allowed.
    assert await syscall(hostile, 135, "0x0400000") == EPERM
    assert (await syscall(hostile, 135, "0xffffffff")).split()[0] == "0"


async def test_32bit_syscall_entry_kills_the_program(hostile: Hostile) -> None:
    # Expected: the filter only knows x86-64 numbers, so a syscall through the i386 entry
    # (int 0x80, here unshare) kills the program instead of slipping past the denylist.
    code = (
        '#include <stdio.h>\nint main(void) { long r; puts("before"); fflush(stdout);\n'
        '  __asm__ volatile("int $0x80" : "=a"(r) : "a"(310), "b"(0x10000000) : "memory");\n'
        '  printf("returned %ld\\n", r); return 0; }\n'
    )
    body = await execute(hostile, "c", code)
    assert body["stdout"] == "before\n"
    assert "signal 31" in body["stderr"]


async def test_kill_all_processes_only_reaches_the_jobs_own(hostile: Hostile) -> None:
    # Expected: kill(-1, SIGKILL) and a sweep over every pid number stay in the job's pid
    # namespace: the canary in another session and the API itself keep running.
    sweep = "kill -9 -1; for pid in $(seq 2 4000); do kill -9 $pid 2>/dev/null; done; echo swept"
    attacked, _ = await with_canary(hostile, execute(hostile, "bash", sweep))
    assert attacked["stdout"] == "swept\n"


async def test_signals_to_host_pids_do_not_arrive(hostile: Hostile) -> None:
    # Expected: the API's own pid (as seen on the host) does not exist inside the sandbox.
    body = await execute(hostile, "bash", f"kill -STOP {os.getpid()}; echo rc=$?")
    assert "No such process" in body["stderr"]
