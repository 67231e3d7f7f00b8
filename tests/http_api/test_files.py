"""Files over HTTP: upload into a session's workspace, list it, download what Claude wrote or handed
back; paths confined to the workspace (traversal, absolute paths and symlinks out are 400), sizes limited."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from core import Agent, ConversationKey
from core.workspace import sanitize_name
from tests.fakes.anthropic_api import FakeAnthropicAPI, ToolCall

from .conftest import Api, running_api


async def new_session(api: Api, user: str) -> str:
    return (await api.client.post("/api/v1/sessions", json={"user_id": user})).json()["session_id"]


async def test_upload_list_download_and_claude_reads_the_upload(api: Api) -> None:
    sid = await new_session(api, "filer")
    root = api.agent.workspaces.root(ConversationKey("api", "filer"))
    up = await api.client.post(
        f"/api/v1/sessions/{sid}/files",
        files=[("file", ("notes.txt", b"alpha beta", "text/plain")), ("file", ("data v2.csv", b"a,b\n", None))],
    )
    assert up.status_code == 201, up.text
    saved = up.json()["files"]
    assert [(f["path"], f["size"], f["type"]) for f in saved] == [
        ("uploads/notes.txt", 10, "file"),
        ("uploads/data_v2.csv", 4, "file"),  # odd characters of a plain name are replaced
    ]
    assert (root / "uploads/notes.txt").read_bytes() == b"alpha beta"
    again = await api.client.post(f"/api/v1/sessions/{sid}/files", files={"file": ("notes.txt", b"second")})
    assert again.json()["files"][0]["path"] == "uploads/notes-1.txt"  # never overwritten

    listed = (await api.client.get(f"/api/v1/sessions/{sid}/files")).json()
    assert listed["dir"] == "." and [(f["name"], f["type"]) for f in listed["files"]] == [("uploads", "dir")]
    uploads = (await api.client.get(f"/api/v1/sessions/{sid}/files", params={"dir": "uploads"})).json()
    assert {f["name"] for f in uploads["files"]} == {"notes.txt", "notes-1.txt", "data_v2.csv"}
    everything = (await api.client.get(f"/api/v1/sessions/{sid}/files", params={"recursive": "true"})).json()
    assert "uploads/notes.txt" in [f["path"] for f in everything["files"]]

    got = await api.client.get(saved[0]["url"])
    assert got.status_code == 200 and got.content == b"alpha beta"
    assert "attachment" in got.headers["content-disposition"] and got.headers["x-content-type-options"] == "nosniff"

    # Attached to a message, Claude gets it (the CLI reads it with its Read tool or inline).
    reply = await api.client.post(
        "/api/v1/chat", json={"session_id": sid, "message": "what is in it?", "attachments": ["uploads/notes.txt"]}
    )
    assert reply.status_code == 200, reply.text
    assert "uploads/notes.txt" in api.fake.requests[-1].last_user_text()
    bad = await api.client.post(
        "/api/v1/chat", json={"session_id": sid, "message": "x", "attachments": ["../../../etc/passwd"]}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_path"


async def test_files_claude_writes_or_sends_are_listed_and_downloadable(api: Api) -> None:
    sid = await new_session(api, "writer")
    root = api.agent.workspaces.root(ConversationKey("api", "writer"))
    api.fake.enqueue(
        ToolCall("Write", {"file_path": str(root / "out/report.md"), "content": "# Report\n"}),
        ToolCall("mcp__ccbridge__send_file", {"path": "out/report.md", "caption": "here it is"}),
    )
    reply = await api.client.post("/api/v1/chat", json={"session_id": sid, "message": "write and send the report"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    url = f"/api/v1/sessions/{sid}/files/out/report.md"
    assert body["files"] == [{"name": "report.md", "path": "out/report.md", "caption": "here it is", "url": url}]
    write = next(c for c in body["tool_calls"] if c["tool"] == "Write")
    assert write["input"]["content"] == "# Report\n" and write["name"] == "Write"
    got = await api.client.get(url)
    assert got.status_code == 200 and got.content == b"# Report\n"
    listed = (await api.client.get(f"/api/v1/sessions/{sid}/files", params={"dir": "out"})).json()["files"]
    assert [(f["path"], f["size"], f["url"]) for f in listed] == [("out/report.md", 9, url)]


def multipart(*names: str | bytes) -> tuple[bytes, dict[str, str]]:
    """A multipart body with one part per file name. A ``str`` is quoted as RFC 7578 says (``\\`` and ``"``
    escaped); ``bytes`` go into the header as they are (httpx would percent-escape a NUL, for one)."""
    boundary = b"ccbridge-test-boundary"
    parts = []
    for name in names:
        raw = name if isinstance(name, bytes) else name.replace("\\", "\\\\").replace('"', '\\"').encode()
        parts.append(
            b'--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\npayload\r\n" % (boundary, raw)
        )
    body = b"".join(parts) + b"--%s--\r\n" % boundary
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"}


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.parametrize("name", ["report-2024.final.pdf", "Prix été.txt", "..hidden", "a..b.txt"])
async def test_a_plain_file_name_is_saved(api: Api, name: str) -> None:
    sid = await new_session(api, "plain")
    root = api.agent.workspaces.root(ConversationKey("api", "plain"))
    body, headers = multipart(name)
    up = await api.client.post(f"/api/v1/sessions/{sid}/files", content=body, headers=headers)
    assert up.status_code == 201, up.text
    [saved] = up.json()["files"]
    assert saved["path"] == f"uploads/{sanitize_name(name)}" and "/" not in saved["name"]
    assert (root / saved["path"]).read_bytes() == b"payload"


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ("../../evil.sh", "'..' is not allowed"),
        ("..", "'..' is not allowed"),
        ("sub/../x.txt", "'..' is not allowed"),
        ("..\\..\\evil.sh", "'..' is not allowed"),
        ("sub/evil.sh", "path separator"),
        ("sub\\evil.sh", "path separator"),
        ("/etc/cron.d/evil", "is an absolute path"),
        ("\\evil.sh", "is an absolute path"),
        ("C:evil.bat", "is an absolute path"),
        # Windows paths, which python-multipart alone would cut down to their last part:
        ("C:\\Users\\me\\evil.bat", "is an absolute path"),
        ("\\\\host\\share\\evil.bat", "is an absolute path"),
        (b"C:\\Users\\me\\evil.bat", "is an absolute path"),  # unescaped, as old browsers sent it
        (b"evil\x00.sh", "NUL"),
        ("", "needs a file name"),
        ("   ", "needs a file name"),
        (".", "is not a file name"),
    ],
)
async def test_an_upload_whose_name_is_a_path_is_refused_and_nothing_is_written(
    api: Api, name: str | bytes, phrase: str
) -> None:
    sid = await new_session(api, "uploader")
    root = api.agent.workspaces.root(ConversationKey("api", "uploader"))
    before = tree(root.parent.parent)
    # A good file first: the whole request is refused, so it is not written either.
    body, headers = multipart("good.txt", name)
    resp = await api.client.post(f"/api/v1/sessions/{sid}/files", content=body, headers=headers)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_path" and error["message"].startswith("file: ")
    assert phrase in error["message"]
    text = name.decode() if isinstance(name, bytes) else name
    if text.strip():
        assert repr(text) in error["message"]  # the message names the bad name, whole
    assert tree(root.parent.parent) == before  # nothing written anywhere under the workspaces
    assert not Path("/etc/cron.d/evil").exists()


OUTSIDE = ["..%2F..%2Fetc%2Fpasswd", "a/..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "..%2F", "link/passwd"]


async def test_paths_out_of_the_workspace_are_refused(api: Api) -> None:
    sid = await new_session(api, "prober")
    root = api.agent.workspaces.root(ConversationKey("api", "prober"))
    (root / "link").symlink_to("/etc")  # a symlink out of the workspace
    for path in OUTSIDE:
        resp = await api.client.get(f"/api/v1/sessions/{sid}/files/{path}")
        assert resp.status_code == 400, (path, resp.text)
        assert resp.json()["error"]["code"] == "invalid_path" and "root:" not in resp.text
        listing = await api.client.get(f"/api/v1/sessions/{sid}/files", params={"dir": unquote(path)})
        assert listing.status_code == 400, (path, listing.text)
        assert listing.json()["error"]["code"] == "invalid_path"
    shown = (await api.client.get(f"/api/v1/sessions/{sid}/files")).json()["files"]
    assert "link" not in [f["name"] for f in shown]  # links out of the workspace are not listed


async def test_more_ways_out_of_the_workspace_are_refused(api: Api, tmp_path: Path) -> None:
    sid = await new_session(api, "prober2")
    root = api.agent.workspaces.root(ConversationKey("api", "prober2"))
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (root / "secret-link.txt").symlink_to(secret)  # a file symlink out of the workspace
    (root / "outside").symlink_to(tmp_path, target_is_directory=True)
    downloads = ["secret-link.txt", "outside/secret.txt", "..%5C..%5C..%5Csecret.txt", "a%00b", "C:%5Csecret.txt"]
    for path in downloads:
        resp = await api.client.get(f"/api/v1/sessions/{sid}/files/{path}")
        assert resp.status_code == 400, (path, resp.text)
        assert resp.json()["error"]["code"] == "invalid_path" and "top secret" not in resp.text
    for folder in ["outside", "outside/", "..\\..", "/", "a\x00b"]:
        listing = await api.client.get(f"/api/v1/sessions/{sid}/files", params={"dir": folder})
        assert listing.status_code == 400, (folder, listing.text)
        assert listing.json()["error"]["code"] == "invalid_path" and "secret.txt" not in listing.text
    recursive = await api.client.get(f"/api/v1/sessions/{sid}/files", params={"recursive": "true"})
    assert recursive.status_code == 200 and recursive.json()["files"] == []  # the links are not listed either


async def test_missing_files_directories_and_other_users(api: Api) -> None:
    sid = await new_session(api, "owner")
    assert (await api.client.get(f"/api/v1/sessions/{sid}/files/nothing.txt")).status_code == 404
    root = api.agent.workspaces.root(ConversationKey("api", "owner"))
    (root / "sub").mkdir()
    is_dir = await api.client.get(f"/api/v1/sessions/{sid}/files/sub")
    assert is_dir.status_code == 400 and "is a directory" in is_dir.json()["error"]["message"]
    other = await api.client.get(f"/api/v1/sessions/{sid}/files", params={"user_id": "intruder"})
    assert other.status_code == 403
    assert (await api.client.get("/api/v1/sessions/unknown/files")).status_code == 404


async def test_upload_size_is_limited(make_sections: Any, fake_api: FakeAnthropicAPI) -> None:
    async with Agent(make_sections(workspace={"max_upload_mb": 0.01})) as agent:  # 10 KiB
        async with running_api(agent, fake_api) as api:
            sid = await new_session(api, "big")
            ok = await api.client.post(f"/api/v1/sessions/{sid}/files", files={"file": ("small.bin", os.urandom(9000))})
            assert ok.status_code == 201
            too_big = await api.client.post(
                f"/api/v1/sessions/{sid}/files", files={"file": ("big.bin", os.urandom(11_000))}
            )
            assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "file_too_large"
            huge = await api.client.post(
                f"/api/v1/sessions/{sid}/files", files={"file": ("huge.bin", os.urandom(200_000))}
            )
            assert huge.status_code == 413 and "workspace.max_upload_mb" in huge.json()["error"]["message"]
            names = [
                f["name"]
                for f in (await api.client.get(f"/api/v1/sessions/{sid}/files", params={"dir": "uploads"})).json()[
                    "files"
                ]
            ]
            assert names == ["small.bin"]
