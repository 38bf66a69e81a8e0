"""The official server's file extensions (contract §9.4): object info fields, the delete alias, batches of
200 files, and upload names kept under /mnt/data with their sub-directories."""

from __future__ import annotations

import httpx

from tests.conftest import run, upload


async def test_object_info_carries_the_official_fields(client: httpx.AsyncClient) -> None:
    uploaded = await upload(client, "reports/q1/data.csv", b"a,b\n1,2\n", path="/upload/batch", read_only="true")
    session_id, file_id = uploaded["storage_session_id"], uploaded["files"][0]["fileId"]
    listed = (await client.get(f"/files/{session_id}?detail=full")).json()[0]
    info = (await client.get(f"/sessions/{session_id}/objects/{file_id}?kind=skill&id=s1&version=2")).json()
    assert info == {
        "name": f"{session_id}/{file_id}",
        "version": None,
        "originalFilename": "reports/q1/data.csv",
        "size": 8,
        "lastModified": listed["lastModified"],
        "etag": listed["etag"],
        "contentType": "text/csv",
        "readOnly": True,
    }
    plain = await upload(client, "notes.txt", b"hi")
    notes = await client.get(f"/sessions/{plain['storage_session_id']}/objects/{plain['files'][0]['fileId']}")
    assert notes.json()["readOnly"] is False


async def test_the_object_delete_alias_deletes_as_the_files_route_does(client: httpx.AsyncClient) -> None:
    for route in ("files", "sessions"):
        uploaded = await upload(client, "gone.txt", b"bye")
        session_id, file_id = uploaded["storage_session_id"], uploaded["files"][0]["fileId"]
        path = f"/files/{session_id}/{file_id}" if route == "files" else f"/sessions/{session_id}/objects/{file_id}"
        deleted = await client.delete(path)
        assert (deleted.status_code, deleted.content) == (204, b"")
        assert (await client.get(f"/download/{session_id}/{file_id}")).status_code == 404
        assert (await client.get(f"/files/{session_id}")).json() == []
        assert (await client.delete(path)).status_code == 404


async def test_a_batch_of_200_files_is_stored_whole(client: httpx.AsyncClient) -> None:
    files = [("file", (f"skills/pptx/part-{index:03}.md", f"part {index}".encode())) for index in range(200)]
    response = await client.post("/upload/batch", files=files, data={"kind": "skill", "id": "pptx", "version": "1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["message"], body["succeeded"], body["failed"]) == ("success", 200, 0)
    names = sorted(
        entry["name"] for entry in (await client.get(f"/files/{body['storage_session_id']}?detail=simple")).json()
    )
    assert names == [f"skills/pptx/part-{index:03}.md" for index in range(200)]


async def test_upload_names_keep_their_folders_under_mnt_data(client: httpx.AsyncClient) -> None:
    cases = {"reports/q1/data.csv": "reports/q1/data.csv", "/etc/passwd": "etc/passwd", "/mnt/data/a/b.txt": "a/b.txt"}
    for sent, kept in cases.items():
        uploaded = await upload(client, sent, b"x")
        assert uploaded["files"][0]["filename"] == kept
        ref = {"id": uploaded["files"][0]["fileId"], "storage_session_id": uploaded["storage_session_id"], "name": kept}
        listed = await run(client, "bash", "find /mnt/data -type f", files=[ref])
        assert listed["stdout"] == f"/mnt/data/{kept}\n"


async def test_upload_names_that_would_leave_mnt_data_are_400(client: httpx.AsyncClient) -> None:
    for name in ("../escape.txt", "a/../../escape.txt", "/mnt/data/../escape.txt", "..", "/"):
        response = await client.post("/upload", files={"file": (name, b"x")})
        assert response.status_code == 400, name
        assert response.json()["details"][0]["code"] == "bad_filename"
    batch = await client.post("/upload/batch", files=[("file", ("../x.txt", b"x")), ("file", ("ok/y.txt", b"y"))])
    assert [entry["status"] for entry in batch.json()["files"]] == ["error", "success"]
