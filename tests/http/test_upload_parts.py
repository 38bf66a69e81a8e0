"""Uploads made of very many parts: refused while parsing, holding one descriptor, never a 500."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.conftest import ClientFactory, upload

BOUNDARY = "codeapi-many-parts"


def many_parts(count: int) -> bytes:
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="f.txt"\r\n'
        "Content-Type: text/plain\r\n\r\nx\r\n"
    )
    return (part * count + f"--{BOUNDARY}--\r\n").encode()


@contextmanager
def descriptor_limit(headroom: int) -> Iterator[None]:
    """This process may open only ``headroom`` more descriptors than it has open now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + headroom, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_an_upload_of_thousands_of_tiny_parts_is_refused_without_exhausting_descriptors(
    client: httpx.AsyncClient,
) -> None:
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    with descriptor_limit(headroom=500):
        response = await client.post("/upload/batch", content=many_parts(5000), headers=headers)

    assert response.status_code == 413
    assert response.json()["error"] == "At most 300 files per session"
    assert (await upload(client, "after.txt", b"fine"))["message"] == "success"


async def test_an_upload_of_many_small_files_holds_one_spool_descriptor(client: httpx.AsyncClient) -> None:
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    with descriptor_limit(headroom=200):
        response = await client.post("/upload/batch", content=many_parts(300), headers=headers)

    assert response.status_code == 200
    assert response.json()["succeeded"] == 300


async def test_the_open_file_limit_is_raised_to_the_hard_limit_at_start(make_client: ClientFactory) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        async with make_client() as client:
            assert (await client.get("/health")).status_code == 200
            assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_an_upload_of_thousands_of_plain_fields_is_refused_while_parsing(client: httpx.AsyncClient) -> None:
    field = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nuser\r\n'
    body = (field * 5000 + f"--{BOUNDARY}--\r\n").encode()
    response = await client.post(
        "/upload", content=body, headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("At most 64 form fields")
