"""The few Linux calls Python 3.11 lacks (setns, prctl, ptrace, seccomp, madvise), through ctypes. Stdlib only.

Used by the zygote to move a forked worker into a jail nsjail built, and by the worker to take on
the same seccomp filter nsjail gave the jail's first process.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACES = {
    "user": CLONE_NEWUSER,
    "mnt": CLONE_NEWNS,
    "pid": CLONE_NEWPID,
    "net": CLONE_NEWNET,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "cgroup": CLONE_NEWCGROUP,
}

MADV_COLLAPSE = 25  # Linux 6.1
HUGE_PAGE_BYTES = 2 << 20

PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
WAIT_ALL = 0x40000000  # __WALL: a traced process that is not our child

libc = ctypes.CDLL(None, use_errno=True)
libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)


class SockFilter(ctypes.Structure):
    _fields_ = (("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32))


class SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter)))


# One BPF program: (code, jt, jf, k) instructions.
Filter = list[tuple[int, int, int, int]]


def checked(result: int, what: str) -> int:
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")
    return result


def prctl(option: int, value: int) -> None:
    checked(libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl({option})")


def namespace_flags(pid: int) -> int:
    """The namespaces of ``pid`` that differ from ours (re-entering our own user namespace is EINVAL)."""
    flags = 0
    for name, flag in NAMESPACES.items():
        if os.stat(f"/proc/{pid}/ns/{name}").st_ino != os.stat(f"/proc/self/ns/{name}").st_ino:
            flags |= flag
    return flags


def enter_namespaces(pidfd: int, flags: int) -> None:
    """Join all of them at once through the pidfd (Linux 5.8), so no half-joined state exists."""
    checked(libc.setns(pidfd, flags), "setns")


def anonymous_writable_ranges() -> list[tuple[int, int]]:
    """This process's private anonymous read-write mappings (the C heap, Python's arenas, numpy's
    buffers), as (start, end), cut to whole huge pages."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if fields[1] != "rw-p" or (len(fields) > 5 and fields[5] != "[heap]"):
            continue
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        start = -(-start // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
        end = end // HUGE_PAGE_BYTES * HUGE_PAGE_BYTES
        if end > start:
            ranges.append((start, end))
    return ranges


# glibc's posix_spawn flags (spawn.h), and the size of its posix_spawnattr_t (336 bytes on x86-64;
# more here, so that no field is written past the buffer).
POSIX_SPAWN_SETSIGDEF = 0x04
POSIX_SPAWN_SETSIGMASK = 0x08
SPAWN_ATTRIBUTES_BYTES = 1024
SIGSET_BYTES = 128
EVERY_SIGNAL = b"\xff" * 8 + bytes(SIGSET_BYTES - 8)  # signals 1-64, set bit by bit (see spawn_as_new)


def spawn_as_new(argv: list[str], environment: list[str]) -> int:
    """Start ``argv`` as a new process does: every signal at its default and none blocked; returns
    its pid. posix_spawn, not fork and exec: it neither copies this (large) process's page tables
    nor makes the child tear them down at the exec, which costs milliseconds per call. glibc's own
    signals (32 and 33), which its posix_spawn would otherwise leave ignored in the child, are among
    the defaulted ones: sigaddset refuses them, so the set is written bit by bit."""
    attributes = ctypes.create_string_buffer(SPAWN_ATTRIBUTES_BYTES)
    every, none = ctypes.create_string_buffer(EVERY_SIGNAL, SIGSET_BYTES), ctypes.create_string_buffer(SIGSET_BYTES)
    arguments = (ctypes.c_char_p * (len(argv) + 1))(*(os.fsencode(item) for item in argv), None)
    variables = (ctypes.c_char_p * (len(environment) + 1))(*(os.fsencode(item) for item in environment), None)
    pid = ctypes.c_int()
    libc.posix_spawnattr_init(attributes)
    try:
        libc.posix_spawnattr_setsigdefault(attributes, every)
        libc.posix_spawnattr_setsigmask(attributes, none)
        libc.posix_spawnattr_setflags(attributes, ctypes.c_short(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        error = libc.posix_spawn(ctypes.byref(pid), arguments[0], None, attributes, arguments, variables)
    finally:
        libc.posix_spawnattr_destroy(attributes)
    if error:  # posix_spawn returns the error number (exec failures included)
        raise OSError(error, os.strerror(error), argv[0])
    return pid.value


def collapse_into_huge_pages() -> None:
    """Move this process's anonymous memory into transparent huge pages where the kernel can
    (MADV_COLLAPSE, Linux 6.1). Only what is there now: the mappings are
    not marked MADV_HUGEPAGE, so a later fault (in a forked child) still gets a small page. Best
    effort: an older kernel or no free huge page leaves small pages."""
    for start, end in anonymous_writable_ranges():
        libc.madvise(start, end - start, MADV_COLLAPSE)


class CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


CAPABILITY_VERSION_3 = 0x20080522


def clear_capabilities() -> None:
    """Empty the effective, permitted and inheritable sets. Needed explicitly: after setns the old
    uid (host root) is not the new namespace's root, so the setuid rule that clears them never fires."""
    header = CapHeader(CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()
    checked(libc.capset(ctypes.byref(header), data), "capset")


def drop_capability_bounding_set() -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for capability in range(last + 1):
        prctl(PR_CAPBSET_DROP, capability)


def read_seccomp_filters(pid: int) -> list[Filter]:
    """The seccomp filters of ``pid``, oldest first, read by briefly seizing it with ptrace.

    nsjail compiles its kafel policy into the jail's first process; copying the compiled filters
    gives a forked worker exactly the same policy without a second compiler. None installed: [].
    """
    checked(libc.ptrace(PTRACE_SEIZE, pid, None, None), "ptrace(SEIZE)")
    try:
        checked(libc.ptrace(PTRACE_INTERRUPT, pid, None, None), "ptrace(INTERRUPT)")
        os.waitpid(pid, WAIT_ALL)
        filters: list[Filter] = []
        while True:
            count = libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(len(filters)), None)
            if count < 0:
                break  # ENOENT past the last filter (or EINVAL when there is none)
            program = (SockFilter * count)()
            checked(
                libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(len(filters)), ctypes.byref(program)),
                "ptrace(SECCOMP_GET_FILTER)",
            )
            filters.append([(item.code, item.jt, item.jf, item.k) for item in program])
    finally:
        libc.ptrace(PTRACE_DETACH, pid, None, None)
    # Index 0 is the most recently installed filter; installing must start with the oldest.
    return list(reversed(filters))


def install_seccomp_filters(filters: list[Filter]) -> None:
    """Requires no_new_privs. Filters stack: each one applies on top of the earlier ones."""
    for instructions in filters:
        program = (SockFilter * len(instructions))(*(SockFilter(*item) for item in instructions))
        fprog = SockFprog(len(instructions), program)
        checked(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "prctl(PR_SET_SECCOMP)")
