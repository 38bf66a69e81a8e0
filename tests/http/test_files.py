"""Uploads, listings, object info, downloads and deletes."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from codeapi.sessions.ids import is_id
from tests.conftest import run, upload
from tests.repl.conftest import wait_until_warm


async def test_upload_answers_success_with_both_session_fields(client: httpx.AsyncClient) -> None:
    body = await upload(client, "d.csv", b"1,2\n", kind="user", id="u1")
    assert body["message"] == "success"
    assert body["storage_session_id"] == body["session_id"]
    assert is_id(body["storage_session_id"])
    assert body["files"][0]["filename"] == "d.csv"
    assert is_id(body["files"][0]["fileId"])


async def test_each_upload_creates_a_new_storage_session(client: httpx.AsyncClient) -> None:
    first = await upload(client, "a.txt", b"a")
    second = await upload(client, "a.txt", b"a")
    assert first["storage_session_id"] != second["storage_session_id"]


async def test_batch_upload_keeps_subdirectories_and_counts(client: httpx.AsyncClient) -> None:
    files = [
        ("file", ("skills/demo/SKILL.md", b"# demo")),
        ("file", ("skills/demo/run.py", b"print(1)")),
    ]
    response = await client.post("/upload/batch", files=files, data={"kind": "skill", "id": "s1", "version": "2"})
    body = response.json()
    assert response.status_code == 200
    assert body["message"] == "success"
    assert body["succeeded"] == 2 and body["failed"] == 0
    assert [item["filename"] for item in body["files"]] == ["skills/demo/SKILL.md", "skills/demo/run.py"]
    assert all(item["status"] == "success" and is_id(item["fileId"]) for item in body["files"])


async def test_read_only_skill_files_come_back_inherited_and_unchanged(client: httpx.AsyncClient) -> None:
    """Contract §5.2: changes a run makes to a read_only upload are dropped; the file is echoed back
    as inherited with its own id and session, and a plain input changed alongside is a new file."""
    files = [("file", ("skills/demo/SKILL.md", b"# demo\n"))]
    skill = (
        await client.post("/upload/batch", files=files, data={"kind": "skill", "id": "s1", "read_only": "true"})
    ).json()
    notes = await upload(client, "notes.txt", b"v1")
    refs = [
        {
            "id": skill["files"][0]["fileId"],
            "storage_session_id": skill["storage_session_id"],
            "name": "skills/demo/SKILL.md",
        },
        {"id": notes["files"][0]["fileId"], "storage_session_id": notes["storage_session_id"], "name": "notes.txt"},
    ]
    code = "echo changed >> skills/demo/SKILL.md; echo v2 >> notes.txt; cat skills/demo/SKILL.md"
    body = await run(client, "bash", code, files=refs)
    assert body["stdout"] == "# demo\nchanged\n"  # the run itself sees its change
    by_name = {item["name"]: item for item in body["files"]}
    assert by_name["skills/demo/SKILL.md"]["inherited"] is True
    assert by_name["skills/demo/SKILL.md"]["id"] == refs[0]["id"]
    assert by_name["skills/demo/SKILL.md"]["storage_session_id"] == skill["storage_session_id"]
    assert "inherited" not in by_name["notes.txt"] and by_name["notes.txt"]["modified_from"]["id"] == refs[1]["id"]
    original = await client.get(f"/download/{skill['storage_session_id']}/{refs[0]['id']}")
    assert original.content == b"# demo\n"
    again = await run(client, "bash", "cat skills/demo/SKILL.md", files=refs[:1])
    assert again["stdout"] == "# demo\n" and again["files"] == []


async def test_batch_upload_reports_bad_files_individually(client: httpx.AsyncClient) -> None:
    files = [("file", ("ok.txt", b"ok")), ("file", ("../../etc/passwd", b"x"))]
    body = (await client.post("/upload/batch", files=files)).json()
    assert body["message"] == "partial"
    assert body["succeeded"] == 1 and body["failed"] == 1
    assert body["files"][1]["status"] == "error"
    assert "error" in body["files"][1]


async def test_upload_without_file_part_is_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post("/upload", data={"kind": "user"}, files={"other": ("x", b"1")})
    assert response.status_code == 400
    assert response.json()["error_type"] == "validation"


async def test_upload_that_is_not_multipart_is_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post("/upload", json={"file": "x"})
    assert response.status_code == 400


async def test_listing_details_match_the_contract(client: httpx.AsyncClient) -> None:
    body = await upload(client, "report.csv", b"a,b\n")
    session_id, file_id = body["storage_session_id"], body["files"][0]["fileId"]

    summary = (await client.get(f"/files/{session_id}", params={"detail": "summary"})).json()
    assert summary[0]["name"] == f"{session_id}/{file_id}"
    assert summary[0]["fileId"] == file_id
    assert summary[0]["lastModified"].endswith("Z")
    moment = datetime.fromisoformat(summary[0]["lastModified"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 300

    full = (await client.get(f"/files/{session_id}", params={"detail": "full", "kind": "user", "id": "x"})).json()
    assert full[0]["id"] == file_id
    assert full[0]["storage_session_id"] == session_id
    assert full[0]["size"] == 4
    assert full[0]["metadata"]["original-filename"] == "report.csv"
    assert full[0]["lastModified"].endswith("Z")

    default = (await client.get(f"/files/{session_id}")).json()
    assert default == full

    simple = (await client.get(f"/files/{session_id}", params={"detail": "simple"})).json()
    assert simple == [{"id": file_id, "name": "report.csv", "path": "/mnt/data/report.csv"}]


async def test_listing_unknown_session_is_empty_not_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/files/" + "Z" * 21, params={"detail": "summary"})
    assert response.status_code == 200
    assert response.json() == []


async def test_object_info_reports_creation_time_and_name(client: httpx.AsyncClient) -> None:
    body = await upload(client, "x.json", b"{}")
    session_id, file_id = body["storage_session_id"], body["files"][0]["fileId"]
    info = await client.get(f"/sessions/{session_id}/objects/{file_id}", params={"kind": "user", "id": "u"})
    assert info.status_code == 200
    assert info.json()["originalFilename"] == "x.json"
    assert info.json()["lastModified"].endswith("Z")
    missing = await client.get(f"/sessions/{session_id}/objects/{'N' * 21}")
    assert missing.status_code == 404


async def test_download_streams_bytes_with_rfc5987_unicode_name(client: httpx.AsyncClient) -> None:
    name = "résumé 数据.txt"
    payload = bytes(range(256)) * 10
    body = await upload(client, name, payload)
    session_id, file_id = body["storage_session_id"], body["files"][0]["fileId"]
    response = await client.get(f"/download/{session_id}/{file_id}", params={"kind": "user", "id": "u"})
    assert response.status_code == 200
    assert response.content == payload
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=")
    assert f"filename*=UTF-8''{quote(name, safe='')}" in disposition
    assert response.headers["cache-control"] == "private, max-age=3600"


async def test_download_unknown_file_is_404_with_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/download/{'A' * 21}/{'B' * 21}")
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "File not found"
    assert body["error_type"] == "resource_not_found"
    assert isinstance(body["timestamp"], float)


async def test_delete_removes_file_from_listing_and_download(client: httpx.AsyncClient) -> None:
    body = await upload(client, "tmp.txt", b"bye")
    session_id, file_id = body["storage_session_id"], body["files"][0]["fileId"]
    response = await client.delete(f"/files/{session_id}/{file_id}")
    assert response.status_code == 204
    assert (await client.get(f"/files/{session_id}")).json() == []
    assert (await client.get(f"/download/{session_id}/{file_id}")).status_code == 404
    assert (await client.delete(f"/files/{session_id}/{file_id}")).status_code == 404


async def test_upload_names_are_sanitised(client: httpx.AsyncClient) -> None:
    body = await upload(client, "/mnt/data/sub/./ok.txt", b"1")
    assert body["files"][0]["filename"] == "sub/ok.txt"
    for bad in ("../escape.txt", "a/../../b", "  "):
        response = await client.post("/upload", files={"file": (bad, b"1")})
        assert response.status_code == 400, bad


async def test_health_is_open_and_names_backends(make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client(headers={}) as anonymous:
        response = await anonymous.get("/health")
        assert response.status_code == 200
        assert response.json()["status"] == "healthy"
        assert response.json()["backends"] == {"metadata": "sqlite", "files": "local"}
        assert (await anonymous.get("/v1/health")).status_code == 200
        assert (await anonymous.get("/docs")).status_code == 200
        assert (await anonymous.get("/openapi.json")).status_code == 200


async def test_health_reports_the_active_backends(client: httpx.AsyncClient, request) -> None:  # type: ignore[no-untyped-def]
    expected = {
        "embedded": {"metadata": "sqlite", "files": "local"},
        "shared": {"metadata": "redis", "files": "s3"},
    }[request.node.callspec.params["client"]]
    assert (await client.get("/health")).json()["backends"] == expected


async def test_detailed_health_checks_every_dependency(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/detailed")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert {name: check["status"] for name, check in checks.items() if name != "python"} == {
        "metadata": "healthy",
        "files": "healthy",
        "sandbox": "healthy",
        "background_loops": "healthy",
        "egress_proxy": "healthy",
    }
    assert checks["python"]["status"] in ("healthy", "starting")  # starting: the zygote is not up yet
    anonymous = await client.get("/health/detailed", headers={"x-api-key": ""})
    assert anonymous.status_code == 401


async def test_metrics_count_executions_and_need_a_key(client: httpx.AsyncClient) -> None:
    await client.post("/exec", json={"lang": "bash", "code": "echo 1 > m.txt"})
    text = (await client.get("/metrics")).text
    assert 'codeapi_executions_total{language="bash",termination="exited"}' in text
    assert 'codeapi_files_stored_total{origin="execution"}' in text
    assert (await client.get("/metrics", headers={"x-api-key": "wrong"})).status_code == 401


TAMPER_IN_PLACE = """
import os
st = os.stat('skills/demo/SKILL.md')
with open('skills/demo/SKILL.md', 'r+') as skill:
    skill.write('# evil')  # the same size
os.utime('skills/demo/SKILL.md', ns=(st.st_atime_ns, st.st_mtime_ns))
kept = 1
"""


async def upload_read_only_skill(client: httpx.AsyncClient) -> dict[str, str]:
    """A LibreChat skill file (read_only batch upload) and the reference a run mounts it by."""
    files = [("file", ("skills/demo/SKILL.md", b"# demo\n"))]
    skill = (
        await client.post("/upload/batch", files=files, data={"kind": "skill", "id": "s1", "read_only": "true"})
    ).json()
    return {
        "id": skill["files"][0]["fileId"],
        "storage_session_id": skill["storage_session_id"],
        "name": "skills/demo/SKILL.md",
    }


async def test_a_read_only_file_rewritten_in_place_is_served_as_uploaded_next_time(client: httpx.AsyncClient) -> None:
    """Same size, mtime put back: a kept Python sandbox must still not serve the tampered copy."""
    await wait_until_warm(client)
    ref = await upload_read_only_skill(client)
    first = await run(client, "py", TAMPER_IN_PLACE, files=[ref])
    assert [item.get("inherited") for item in first["files"]] == [True]

    second = await run(
        client, "py", "print(open('skills/demo/SKILL.md').read())", session_id=first["session_id"], files=[ref]
    )

    assert second["stdout"] == "# demo\n\n"


async def test_an_untouched_read_only_file_lets_the_kept_sandbox_serve_the_next_call(client: httpx.AsyncClient) -> None:
    """Its content still matches what was staged, so the session's kept sandbox is reused: a file in
    its private /tmp (which a fresh sandbox would not have) is still there."""
    await wait_until_warm(client)
    ref = await upload_read_only_skill(client)
    first = await run(client, "py", "open('/tmp/kept-sandbox', 'w').close()", files=[ref])

    second = await run(
        client,
        "py",
        "import os\nprint(os.path.exists('/tmp/kept-sandbox'), open('skills/demo/SKILL.md').read())",
        session_id=first["session_id"],
        files=[ref],
    )

    assert second["stdout"] == "True # demo\n\n"
