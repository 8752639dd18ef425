#!/usr/bin/env python3
"""A mock Hugging Face Hub on 127.0.0.1 for test_hub (tests/unit/hub/).

Serves what huggingface_hub's snapshot_download and medr1-download ask for:
  GET  /api/models/<repo>/revision/<rev>[?blobs=true]   {"id", "sha", "siblings": [{"rfilename", size...}]}
  GET  /api/models/<repo>/tree/<rev>[?recursive=...]    [{"type", "path", "size", "oid", "lfs"?}]
  HEAD|GET /<repo>/resolve/<rev>/<file>
       small (git) file: 200, ETag "<git blob sha1>", X-Repo-Commit, Range (206 / 416)
       large (LFS) file: 302 to a CDN-like URL on another host (127.0.0.2, the "signed URL"), with ETag (of the
       pointer), X-Linked-Etag "<sha256>", X-Linked-Size, X-Repo-Commit; the CDN serves the bytes with Range.
Repos (all with the same files; the name picks a behaviour):
  test-org/tiny-model     plain
  test-org/cut-model      the first GET of each LFS file is cut after half of its bytes (connection closed)
  test-org/corrupt-model  model.safetensors served with one byte flipped (headers keep the true sha256)
  test-org/gated-model    401 unless "Authorization: Bearer <--token>" (API and resolve; the CDN needs none)
  test-org/flaky-model    resolve of model.safetensors always answers 500
  test-org/ghost-model    lists ghost.bin, whose resolve answers 404 (EntryNotFound)
  test-org/html-model     the listing answers an HTML page (a captive portal / proxy, not a Hub)
  old-org/tiny-model      renamed: 307 with a relative Location to test-org/tiny-model (API and resolve)
  anything else           404 RepoNotFound; a revision other than main / the commit: 404 RevisionNotFound
Prints "PORT <hub port> <cdn host> <cdn port>" on stdout once listening (--dump DIR: the files' bytes first); logs each request as one JSON line to
--log (server, method, path, range, auth, status). Stops on SIGTERM.
"""
import argparse
import hashlib
import json
import os
import random
import signal
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LFS_FILES = {"model.safetensors": (1, 1_500_000), "weights/extra.bin": (2, 300_000)}


def make_files():
    files = {
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": b"# tiny-model\n\nA mock repo for medr1's hub tests.\n",
        "empty.txt": b"",
        "config.json": json.dumps({"model_type": "qwen2_vl", "hidden_size": 32}, indent=2).encode(),
        "tokenizer/tokenizer.json": json.dumps({"model": {"vocab": {f"t{i}": i for i in range(1500)}}}).encode(),
    }
    for name, (seed, size) in LFS_FILES.items():
        files[name] = random.Random(seed).randbytes(size)
    return files


FILES = make_files()
REPOS = ["test-org/tiny-model", "test-org/cut-model", "test-org/corrupt-model", "test-org/gated-model",
         "test-org/flaky-model", "test-org/ghost-model", "test-org/html-model"]
RENAMED = {"old-org/tiny-model": "test-org/tiny-model"}


def git_sha1(b):
    return hashlib.sha1(b"blob %d\0" % len(b) + b).hexdigest()


def commit_of(repo):
    return hashlib.sha1(repo.encode()).hexdigest()


def pointer_of(data):
    sha = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()


def repo_files(repo):
    names = sorted(FILES)
    if repo == "test-org/ghost-model":
        names.append("ghost.bin")
    return names


def entry(name):
    if name == "ghost.bin":
        return {"size": 7, "blobId": git_sha1(b"ghost!\n")}
    data = FILES[name]
    if name in LFS_FILES:
        ptr = pointer_of(data)
        return {"size": len(data), "blobId": git_sha1(ptr),
                "lfs": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(ptr)}}
    return {"size": len(data), "blobId": git_sha1(data)}


class State:
    def __init__(self, log_path, token):
        self.log = open(log_path, "a", buffering=1)
        self.lock = threading.Lock()
        self.token = token
        self.cut_done = set()
        self.cdn_host = "127.0.0.2"
        self.cdn_port = 0
        self.cdn_same_host = False


def parse_range(h, total):
    """(start, end) inclusive, or None (no / unparsable header), or 'bad' (unsatisfiable)."""
    if not h or not h.startswith("bytes="):
        return None
    spec = h[len("bytes="):].split(",")[0].strip()
    a, _, b = spec.partition("-")
    if not a:
        return None
    start = int(a)
    end = int(b) if b else total - 1
    if start >= total:
        return "bad"
    return start, min(end, total - 1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_kind = "hub"
    state = None

    def log_message(self, fmt, *args):  # quiet
        pass

    def _log(self, status):
        rec = {"server": self.server_kind, "method": self.command, "path": self.path,
               "range": self.headers.get("Range"), "auth": self.headers.get("Authorization"), "status": status}
        with self.state.lock:
            self.state.log.write(json.dumps(rec) + "\n")

    def send(self, status, headers=None, body=b""):
        self._log(status)
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, message):
        self.send(status, {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"},
                  json.dumps({"error": message}).encode())

    def do_HEAD(self):
        self.route()

    def do_GET(self):
        self.route()

    def send_bytes(self, data, headers, cut=False):
        """200 / 206 / 416 for `data` with Range; `cut`: close the connection after half the body."""
        total = len(data)
        rng = parse_range(self.headers.get("Range"), total)
        headers = dict(headers)
        headers["Accept-Ranges"] = "bytes"
        if rng == "bad":
            headers["Content-Range"] = f"bytes */{total}"
            return self.send(416, headers)
        status, start, end = 200, 0, total - 1
        if rng is not None:
            status, (start, end) = 206, rng
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        body = data[start:end + 1]
        if not cut or self.command == "HEAD":
            return self.send(status, headers, body)
        self._log(f"{status}-cut")
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ---- hub ----
    def route(self):
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query)
        if self.server_kind == "cdn":
            return self.cdn(path, query)
        parts = path.lstrip("/").split("/")
        api = parts[:2] == ["api", "models"]
        rest = parts[2:] if api else parts
        if len(rest) < 2:
            return self.error(404, "RepoNotFound", "Repository not found")
        repo = "/".join(rest[:2])
        if repo in RENAMED:
            new = ("/api/models/" if api else "/") + RENAMED[repo] + "/" + "/".join(rest[2:])
            if url.query:
                new += "?" + url.query
            return self.send(307, {"Location": urllib.parse.quote(new, safe="/?=&")}, b"Moved\n")
        if repo not in REPOS:
            return self.error(404, "RepoNotFound", f"Repository not found: {repo}")
        if repo == "test-org/gated-model":
            auth = self.headers.get("Authorization")
            if auth is None:
                return self.error(401, "GatedRepo", f"Access to model {repo} is restricted. You must have access "
                                  "to it and be authenticated to access it. Please log in.")
            if auth != f"Bearer {self.state.token}":
                return self.error(401, "", "Invalid credentials in Authorization header")
        commit = commit_of(repo)
        if api and len(rest) >= 4 and rest[2] in ("revision", "tree"):
            rev = rest[3]
            if rev not in ("main", commit):
                return self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            if rest[2] == "revision" and repo == "test-org/html-model":  # a proxy's page, not the Hub's JSON
                return self.send(200, {"Content-Type": "text/html"}, b"<html><body>Sign in</body></html>")
            if rest[2] == "revision":
                sibs = []
                for name in repo_files(repo):
                    s = {"rfilename": name}
                    if query.get("blobs") == ["true"]:
                        s.update(entry(name))
                    sibs.append(s)
                body = {"id": repo, "modelId": repo, "sha": commit, "private": False,
                        "gated": "auto" if repo == "test-org/gated-model" else False, "siblings": sibs}
                return self.send(200, {"Content-Type": "application/json"}, json.dumps(body).encode())
            items, dirs = [], set()
            for name in repo_files(repo):
                e = entry(name)
                d = name.rsplit("/", 1)[0] if "/" in name else None
                if d and d not in dirs:
                    dirs.add(d)
                    items.append({"type": "directory", "oid": git_sha1(d.encode()), "size": 0, "path": d})
                it = {"type": "file", "oid": e["blobId"], "size": e["size"], "path": name}
                if "lfs" in e:
                    it["lfs"] = {"oid": e["lfs"]["sha256"], "size": e["size"], "pointerSize": e["lfs"]["pointerSize"]}
                items.append(it)
            return self.send(200, {"Content-Type": "application/json"}, json.dumps(items).encode())
        if not api and len(rest) >= 5 and rest[2] == "resolve":
            rev, name = rest[3], "/".join(rest[4:])
            if rev not in ("main", commit):
                return self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            if name not in repo_files(repo) or name == "ghost.bin":
                return self.error(404, "EntryNotFound", f"{name} does not exist on \"{rev}\"")
            if repo == "test-org/flaky-model" and name == "model.safetensors":
                return self.error(500, "", "Internal Error - We're working hard to fix this as soon as possible!")
            data = FILES[name]
            common = {"X-Repo-Commit": commit}
            if name in LFS_FILES:
                sha = hashlib.sha256(data).hexdigest()
                loc = (f"http://{self.state.cdn_host}:{self.state.cdn_port}/cdn/{sha}?"
                       + urllib.parse.urlencode({"repo": repo, "file": name, "sig": "mock"}))
                hdrs = dict(common, **{"Location": loc, "ETag": f"\"{git_sha1(pointer_of(data))}\"",
                                       "X-Linked-Etag": f"\"{sha}\"", "X-Linked-Size": str(len(data))})
                return self.send(302, hdrs, f"Found. Redirecting to {loc}".encode())
            return self.send_bytes(data, dict(common, ETag=f"\"{git_sha1(data)}\""))
        return self.error(404, "EntryNotFound", f"no route for {path}")

    # ---- cdn ----
    def cdn(self, path, query):
        repo = query.get("repo", [""])[0]
        name = query.get("file", [""])[0]
        if name not in LFS_FILES or not path.startswith("/cdn/"):
            return self.send(404, {}, b"NoSuchKey\n")
        data = FILES[name]
        sha = hashlib.sha256(data).hexdigest()
        if repo == "test-org/corrupt-model" and name == "model.safetensors":
            data = bytearray(data)
            data[777] ^= 0x5A
            data = bytes(data)
        hdrs = {"ETag": f"\"{sha}\"", "Content-Type": "application/octet-stream"}
        if self.state.cdn_same_host:  # the client follows a same-host redirect: give it the Hub's headers here too
            hdrs.update({"X-Linked-Etag": f"\"{sha}\"", "X-Linked-Size": str(len(data)), "X-Repo-Commit": commit_of(repo)})
        cut = False
        if repo == "test-org/cut-model" and self.command == "GET":
            with self.state.lock:
                cut = name not in self.state.cut_done
                self.state.cut_done.add(name)
        return self.send_bytes(data, hdrs, cut=cut)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            return  # a client that went away (a test's process exiting with keep-alive connections open)
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--token", default="hf_mock_secret")
    ap.add_argument("--dump", help="write the repo files (the reference bytes) into this folder")
    args = ap.parse_args()
    if args.dump:
        for name, data in FILES.items():
            path = os.path.join(args.dump, *name.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
    state = State(args.log, args.token)

    def handler(kind):
        return type(f"{kind}Handler", (Handler,), {"server_kind": kind, "state": state})

    hub = Server(("127.0.0.1", 0), handler("hub"))
    try:
        # The CDN on another host name, as the Hub's signed URLs are (MOCK_HUB_CDN_HOST=127.0.0.1: the fallback).
        cdn_host = os.environ.get("MOCK_HUB_CDN_HOST", "127.0.0.2")
        if cdn_host == "127.0.0.1":
            raise OSError("same host asked for")
        cdn = Server((cdn_host, 0), handler("cdn"))
    except OSError:
        cdn = Server(("127.0.0.1", 0), handler("cdn"))
        state.cdn_host, state.cdn_same_host = "127.0.0.1", True
    state.cdn_port = cdn.server_address[1]
    for s in (hub, cdn):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    # The log is line-buffered: nothing to flush, so stop at once.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    print(f"PORT {hub.server_address[1]} {state.cdn_host} {state.cdn_port}", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
