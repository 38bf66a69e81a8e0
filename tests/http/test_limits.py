"""Every limit of the configuration guide, enforced through the real sandbox."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ClientFactory, run


@pytest.fixture(scope="module")
async def tight(make_client: ClientFactory) -> httpx.AsyncClient:
    async with make_client(
        MAX_EXECUTION_TIME=3,
        MAX_MEMORY_MB=128,
        MAX_OUTPUT_KB=16,
        MAX_FILE_SIZE_MB=1,
        MAX_FILES_PER_SESSION=3,
        MAX_OUTPUT_FILES=2,
        MAX_FILENAME_LENGTH=20,
        MAX_PROCESSES=16,
    ) as client:
        yield client


async def test_max_execution_time_stops_an_infinite_loop(tight: httpx.AsyncClient) -> None:
    body = await run(tight, "py", "print('start', flush=True)\nwhile True: pass")
    assert body["stdout"] == "start\n"
    assert "TimeoutError: Execution exceeded 3 seconds" in body["stderr"]


async def test_request_timeout_is_honoured_below_the_maximum(tight: httpx.AsyncClient) -> None:
    body = await run(tight, "bash", "sleep 10", timeout=1000)
    assert "TimeoutError: Execution exceeded 1 seconds" in body["stderr"]


async def test_request_timeout_is_clamped_to_the_maximum(tight: httpx.AsyncClient) -> None:
    body = await run(tight, "bash", "sleep 10", timeout=300000)
    assert "TimeoutError: Execution exceeded 3 seconds" in body["stderr"]


async def test_max_memory_stops_an_over_allocation(tight: httpx.AsyncClient) -> None:
    body = await run(tight, "py", "x = bytearray(512 * 1024 * 1024)\nprint('allocated')")
    assert "allocated" not in body["stdout"]
    assert "memory limit of 128 MB" in body["stderr"] or "MemoryError" in body["stderr"]


async def test_max_memory_applies_to_compiled_programs(tight: httpx.AsyncClient) -> None:
    code = (
        "#include <stdlib.h>\n#include <stdio.h>\n"
        "int main(void){ size_t n = 512u<<20; volatile char *p = malloc(n); long s = 0;"
        " for (size_t i = 0; i < n; i += 4096) p[i] = (char)i;"
        ' for (size_t i = 0; i < n; i += 4096) s += p[i]; printf("touched %ld\\n", s); return 0; }'
    )
    body = await run(tight, "c", code)
    assert "touched" not in body["stdout"]
    assert "memory limit of 128 MB" in body["stderr"]


async def test_output_is_capped_while_streaming(tight: httpx.AsyncClient) -> None:
    body = await run(tight, "py", "import sys\nwhile True: sys.stdout.write('x' * 4096)")
    assert len(body["stdout"]) == 16 * 1024
    assert "OutputLimitExceeded" in body["stderr"]
    assert "[stdout truncated at 16 KiB]" in body["stderr"]


async def test_process_limit_contains_a_fork_bomb(tight: httpx.AsyncClient) -> None:
    body = await run(tight, "bash", "bomb() { bomb | bomb & }; bomb; sleep 1; echo survived")
    assert "fork" in body["stderr"].lower() or "Resource temporarily unavailable" in body["stderr"]
    after = await run(tight, "bash", "echo healthy")
    assert after["stdout"] == "healthy\n"


async def test_upload_over_max_file_size_is_413(tight: httpx.AsyncClient) -> None:
    response = await tight.post("/upload", files={"file": ("big.bin", b"x" * (1024 * 1024 + 1))})
    assert response.status_code == 413
    assert response.json()["error_type"] == "validation"
    exact = await tight.post("/upload", files={"file": ("fits.bin", b"x" * (1024 * 1024))})
    assert exact.status_code == 200


async def test_batch_file_over_max_size_fails_alone(tight: httpx.AsyncClient) -> None:
    files = [("file", ("big.bin", b"x" * (1024 * 1024 + 1))), ("file", ("small.txt", b"ok"))]
    body = (await tight.post("/upload/batch", files=files)).json()
    assert [item["status"] for item in body["files"]] == ["error", "success"]


async def test_more_files_than_max_files_per_session_is_413(tight: httpx.AsyncClient) -> None:
    files = [("file", (f"f{index}.txt", b"1")) for index in range(4)]
    response = await tight.post("/upload/batch", files=files)
    assert response.status_code == 413


async def test_filename_over_max_length_is_400(tight: httpx.AsyncClient) -> None:
    response = await tight.post("/upload", files={"file": ("n" * 21, b"1")})
    assert response.status_code == 400
    assert (await tight.post("/upload", files={"file": ("n" * 20, b"1")})).status_code == 200


async def test_output_files_are_capped_at_max_output_files(tight: httpx.AsyncClient) -> None:
    body = await run(tight, "bash", "for i in 1 2 3 4; do echo $i > f$i.txt; done")
    assert [item["name"] for item in body["files"]] == ["f1.txt", "f2.txt"]
    assert "more than 2 output files" in body["stderr"]


async def test_sandbox_cannot_write_a_file_over_max_file_size(tight: httpx.AsyncClient) -> None:
    body = await run(tight, "bash", "head -c 2000000 /dev/zero > big.bin; echo small > ok.txt; wc -c < big.bin")
    assert "File too large" in body["stderr"] or "File size limit exceeded" in body["stderr"]
    assert int(body["stdout"]) <= 1024 * 1024


async def test_a_session_never_grows_past_max_files_per_session(tight: httpx.AsyncClient) -> None:
    first = await run(tight, "bash", "echo 1 > a.txt; echo 2 > b.txt")
    second = await run(tight, "bash", "echo 3 > c.txt; echo 4 > d.txt", session_id=first["session_id"])
    assert [item["name"] for item in second["files"]] == ["c.txt"]
    assert "the session has reached its file limit" in second["stderr"]
    listing = await tight.get(f"/files/{first['session_id']}")
    assert len(listing.json()) == 3
