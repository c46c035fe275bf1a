"""A minimal in-memory Hugging Face Hub on 127.0.0.1, enough for the real `huggingface_hub` client to create a
repo, commit files (pre-upload answers "regular" so contents travel inline, no LFS/Xet) and download them.

Used by the Hub round-trip tests: point `HF_ENDPOINT` at `server.url` in a subprocess. Nothing leaves the machine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Repo:
    def __init__(self):
        self.commits: list[tuple[str, dict[str, bytes]]] = []  # (sha, files) oldest first

    @property
    def head(self):
        return self.commits[-1] if self.commits else (None, {})

    def get(self, revision: str):
        if revision in ("main", None):
            return self.head
        for sha, files in self.commits:
            if sha == revision:
                return sha, files
        return None, None


class FakeHub:
    def __init__(self):
        self.repos: dict[str, _Repo] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code, body=b"", headers=None, head=False):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                    headers = {"Content-Type": "application/json", **(headers or {})}
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_HEAD(self):
                self._dispatch("HEAD")

            def do_GET(self):
                self._dispatch("GET")

            def do_POST(self):
                self._dispatch("POST")

            def _dispatch(self, method):
                path = self.path.split("?")[0]
                hub.requests.append(f"{method} {path}")
                with hub._lock:
                    try:
                        hub._route(self, method, path)
                    except Exception as err:  # surface server bugs to the client as 500
                        self._send(500, {"error": f"{type(err).__name__}: {err}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ routes
    def _route(self, h, method, path):
        if method == "POST" and path == "/api/repos/create":
            data = json.loads(h._body() or b"{}")
            repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
            if repo_id in self.repos:
                return h._send(409, {"error": "You already created this model repo"})
            self.repos[repo_id] = _Repo()
            return h._send(200, {"url": f"{self.url}/{repo_id}", "name": repo_id})
        if method == "POST" and path == "/api/validate-yaml":
            h._body()
            return h._send(200, {"errors": [], "warnings": []})
        if method == "GET" and path == "/api/whoami-v2":
            return h._send(200, {"name": "tester", "type": "user", "orgs": [], "auth": {"accessToken": {"role": "write"}}})
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/(.+)", path)
        if m and method == "POST":
            files = json.loads(h._body())["files"]
            return h._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/(.+)", path)
        if m and method == "POST":
            return self._commit(h, m.group(1))
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path)
        if m and method == "GET":
            repo = self.repos.get(m.group(1))
            _, files = repo.get(m.group(2)) if repo else (None, None)
            if files is None:
                return h._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return h._send(200, [{"type": "file", "path": p, "size": len(c), "oid": hashlib.sha1(c).hexdigest()}
                                 for p, c in sorted(files.items())])
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+))?", path)
        if m and method == "GET":
            repo = self.repos.get(m.group(1))
            sha, files = repo.get(m.group(2) or "main") if repo else (None, None)
            if files is None:
                return h._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return h._send(200, {"id": m.group(1), "modelId": m.group(1), "sha": sha, "private": False,
                                 "siblings": [{"rfilename": p} for p in sorted(files)]})
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m and method in ("GET", "HEAD"):
            repo = self.repos.get(m.group(1))
            if repo is None:
                return h._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}, head=method == "HEAD")
            sha, files = repo.get(m.group(2))
            if files is None:
                return h._send(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"}, head=method == "HEAD")
            content = files.get(m.group(3))
            if content is None:
                return h._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha}, head=method == "HEAD")
            etag = hashlib.sha1(content).hexdigest()
            return h._send(200, content, {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}, head=method == "HEAD")
        return h._send(404, {"error": f"not implemented: {method} {path}"})

    def _commit(self, h, repo_id):
        repo = self.repos.get(repo_id)
        if repo is None:
            return h._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        _, files = repo.head
        files = dict(files)
        for line in h._body().decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] in ("deletedFile", "deletedFolder"):
                prefix = value["path"]
                files = {p: c for p, c in files.items() if p != prefix and not p.startswith(prefix.rstrip("/") + "/")}
            elif item["key"] == "lfsFile":
                return h._send(400, {"error": "this test server only accepts regular uploads"})
        sha = hashlib.sha1(f"{repo_id}{len(repo.commits)}".encode()).hexdigest()
        repo.commits.append((sha, files))
        return h._send(200, {"commitUrl": f"{self.url}/{repo_id}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})
