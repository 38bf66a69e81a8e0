"""Resource exhaustion: every bomb stays inside its own job's limits, and other sessions keep running.

Limits in force (conftest.LIMITS): 256 MB, 32 processes+threads, 64 KiB per output stream, 8 MB per
file, a 64 MB /mnt/data quota and a 32 MB /tmp; a test of the wall-clock limit gives its own timeout.
"""

from __future__ import annotations

from pathlib import Path

from tests.security.conftest import Hostile, execute, with_canary

C_MEMORY_BOMB = r"""
#include <stdlib.h>
#include <stdio.h>
int main(void) {
    for (size_t total = 0;; total += 1 << 20) {
        char *p = malloc(1 << 20);
        if (!p) { puts("malloc failed"); return 1; }
        for (int i = 0; i < (1 << 20); i += 4096) p[i] = 1;
        if (total > (2UL << 30)) { puts("allocated 2 GB"); return 0; }
    }
}
"""


async def test_bash_fork_bomb_hits_the_process_limit_while_another_session_runs(hostile: Hostile) -> None:
    # Expected: pids.max (32) stops the bomb with EAGAIN; the canary in another session still succeeds.
    bomb = execute(hostile, "bash", "bomb() { bomb | bomb & }; bomb; sleep 2; echo parent-survived", timeout=4000)
    attacked, _ = await with_canary(hostile, bomb)
    assert "parent-survived" in attacked["stdout"] or "TimeoutError" in attacked["stderr"]


async def test_python_fork_loop_gets_eagain(hostile: Hostile) -> None:
    # Expected: os.fork() fails with EAGAIN (BlockingIOError) once 32 tasks exist; nothing leaks.
    code = (
        "import os, time\nchildren = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
        "            time.sleep(30)\n            os._exit(0)\n        children += 1\n"
        "except BlockingIOError:\n    print('stopped at', children)"
    )
    body = await execute(hostile, "py", code)
    assert body["stdout"].startswith("stopped at")
    assert int(body["stdout"].split()[-1]) < 32


async def test_thread_bomb_hits_the_same_limit(hostile: Hostile) -> None:
    # Expected: threads count against pids.max, so thread creation fails long before 1000 threads.
    code = (
        "import threading, time\nstarted = 0\ntry:\n    for _ in range(1000):\n"
        "        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n        started += 1\n"
        "except RuntimeError:\n    print('threads', started)\nimport os\nos._exit(0)"
    )
    body = await execute(hostile, "py", code)
    assert body["stdout"].startswith("threads")
    assert int(body["stdout"].split()[-1]) < 32


async def test_python_memory_bomb_is_stopped_at_the_memory_limit(hostile: Hostile) -> None:
    # Expected: the 256 MB cgroup kills the program (or Python raises MemoryError); 2 GB is never reached.
    body = await execute(hostile, "py", "blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))")
    assert "memory limit of 256 MB" in body["stderr"] or "MemoryError" in body["stderr"]


async def test_c_memory_bomb_is_killed_while_another_session_runs(hostile: Hostile) -> None:
    # Expected: touching pages past 256 MB gets the program OOM-killed inside its own cgroup only.
    attacked, _ = await with_canary(hostile, execute(hostile, "c", C_MEMORY_BOMB))
    assert "allocated 2 GB" not in attacked["stdout"]
    assert "memory limit of 256 MB" in attacked["stderr"]


FILL = (
    "import os\nwritten = 0\ntry:\n    for i in range(1000):\n        with open(f'{where}/fill{{i}}', 'wb') as f:\n"
    "            for _ in range(4):\n                f.write(os.urandom(1 << 20))\n                written += 1\n"
    "except OSError as error:\n    print(error.strerror, written)"
)


async def test_tmp_fill_stops_at_the_tmpfs_size(hostile: Hostile) -> None:
    # Expected: /tmp is a 32 MB tmpfs of the job's own: many 4 MB files end in ENOSPC.
    body = await execute(hostile, "py", FILL.format(where="/tmp"))
    assert body["stdout"].startswith("No space left on device")
    assert int(body["stdout"].split()[-1]) <= 32


async def test_shm_fill_stops_at_its_size(hostile: Hostile) -> None:
    # Expected: /dev/shm is small and private too; filling it fails with ENOSPC, not host memory.
    body = await execute(hostile, "py", FILL.format(where="/dev/shm"))
    assert body["stdout"].startswith("No space left on device")
    assert int(body["stdout"].split()[-1]) <= 32


async def test_workdir_disk_fill_stops_at_the_quota_while_another_session_runs(hostile: Hostile) -> None:
    # Expected: /mnt/data is a 64 MB tmpfs: many 4 MB files end in ENOSPC; the host disk is untouched.
    attacked, _ = await with_canary(hostile, execute(hostile, "py", FILL.format(where=".")))
    assert attacked["stdout"].startswith("No space left on device")
    assert int(attacked["stdout"].split()[-1]) <= 64


async def test_inode_fill_stops_at_the_inode_quota(hostile: Hostile) -> None:
    # Expected: the workdir tmpfs caps inodes (1024 for 64 MB); creating files ends in ENOSPC.
    code = (
        "import os\ncount = 0\ntry:\n    while True:\n        os.mkdir(f'd{count}')\n        count += 1\n"
        "except OSError as error:\n    print(error.strerror, count)"
    )
    body = await execute(hostile, "py", code)
    assert body["stdout"].startswith("No space left on device")
    assert int(body["stdout"].split()[-1]) <= 1024


async def test_single_file_over_max_file_size_is_cut_by_rlimit(hostile: Hostile) -> None:
    # Expected: RLIMIT_FSIZE (8 MB) makes the write fail with EFBIG; the file never grows past it.
    body = await execute(hostile, "bash", "head -c 20000000 /dev/zero > big.bin; stat -c %s big.bin")
    assert "File size limit exceeded" in body["stderr"] or "File too large" in body["stderr"]
    assert int(body["stdout"]) <= 8 * 1024 * 1024


async def test_print_flood_is_capped_while_streaming(hostile: Hostile) -> None:
    # Expected: stdout is kept to 64 KiB and the program is stopped once it goes over.
    body = await execute(hostile, "py", "while True:\n    print('x' * 1000)")
    assert len(body["stdout"]) <= 64 * 1024
    assert "OutputLimitExceeded" in body["stderr"]


async def test_raw_write_flood_on_fd1_is_capped(hostile: Hostile) -> None:
    # Expected: bypassing buffering with os.write(1, ...) changes nothing: same cap, same stop.
    body = await execute(hostile, "py", "import os\nchunk = b'y' * 65536\nwhile True:\n    os.write(1, chunk)")
    assert len(body["stdout"]) <= 64 * 1024
    assert "OutputLimitExceeded" in body["stderr"]


async def test_stderr_flood_is_capped(hostile: Hostile) -> None:
    # Expected: stderr has its own 64 KiB cap (plus the service's notes).
    body = await execute(hostile, "bash", "yes error-line-error-line >&2")
    assert len(body["stderr"]) <= 64 * 1024 + 1024
    assert "[stderr truncated at 64 KiB]" in body["stderr"]


async def test_flood_from_many_processes_is_capped(hostile: Hostile) -> None:
    # Expected: eight writers sharing the pipes cannot push past the cap either.
    body = await execute(hostile, "bash", "for i in $(seq 8); do yes flood & done; wait")
    assert len(body["stdout"]) <= 64 * 1024
    assert "OutputLimitExceeded" in body["stderr"]


def memory_kb(field: str) -> int:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, which hosts the API."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1])


async def test_output_floods_leave_api_memory_flat(hostile: Hostile) -> None:
    # Expected: output over the cap is read and dropped, never buffered: while five programs write
    # 1 MB chunks as fast as they can until stopped, the API process's peak RSS stays within a few
    # MB of where it started (measured: +2.7 MB).
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before_kb = memory_kb("VmRSS")
    flood = "#include <unistd.h>\nchar b[1<<20];\nint main(void){for(;;) write(1,b,sizeof b);}"
    for _ in range(5):
        body = await execute(hostile, "c", flood)
        assert len(body["stdout"]) <= 64 * 1024
    grown_mb = (memory_kb("VmHWM") - before_kb) / 1024
    assert grown_mb < 32, f"API peak RSS grew by {grown_mb:.0f} MB"


async def test_infinite_loop_is_stopped_at_the_deadline(hostile: Hostile) -> None:
    # Expected: a CPU-bound loop ends at the request's 2 s timeout with a TimeoutError note.
    body = await execute(hostile, "py", "while True:\n    pass", timeout=2000)
    assert "TimeoutError: Execution exceeded 2 seconds" in body["stderr"]


async def test_cpu_hogs_do_not_starve_another_session(hostile: Hostile) -> None:
    # Expected: busy processes are capped at one CPU per job, so the canary still finishes.
    hog = execute(hostile, "bash", "for i in 1 2 3 4; do (while :; do :; done) & done; wait", timeout=3000)
    attacked, _ = await with_canary(hostile, hog)
    assert "TimeoutError" in attacked["stderr"]


async def test_sleep_is_stopped_at_the_deadline(hostile: Hostile) -> None:
    # Expected: a sleeping program is killed at the deadline like a busy one.
    body = await execute(hostile, "bash", "sleep 600", timeout=1000)
    assert "TimeoutError: Execution exceeded 1 seconds" in body["stderr"]


async def test_nohup_background_process_dies_with_the_run(hostile: Hostile) -> None:
    # Expected: the run returns as soon as the script exits; the nohup'd sleep is killed with the
    # job's pid namespace (the containment check finds no process with a sandbox uid).
    body = await execute(hostile, "bash", "nohup sleep 600 >/dev/null 2>&1 &\necho started")
    assert body["stdout"] == "started\n"


async def test_setsid_daemon_dies_with_the_run(hostile: Hostile) -> None:
    # Expected: a new session does not leave the pid namespace: the daemon dies with the job.
    body = await execute(
        hostile, "bash", "setsid -f sh -c 'while :; do sleep 1; done' </dev/null >/dev/null 2>&1\necho ok"
    )
    assert body["stdout"] == "ok\n"


async def test_double_fork_daemon_dies_with_the_run(hostile: Hostile) -> None:
    # Expected: the classic double fork re-parents to the job's init, which takes it down on exit.
    code = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        time.sleep(600)\n    os._exit(0)\ntime.sleep(0.2)\nprint('parent done')"
    )
    body = await execute(hostile, "py", code)
    assert body["stdout"] == "parent done\n"


async def test_background_busy_loop_after_exit_dies(hostile: Hostile) -> None:
    # Expected: a disowned CPU burner does not outlive the script that started it.
    body = await execute(hostile, "bash", "(while :; do :; done) & disown\necho bye")
    assert body["stdout"] == "bye\n"
