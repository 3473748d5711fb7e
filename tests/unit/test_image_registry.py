"""Pulling and pushing against a fake registry on loopback (in-process, plain HTTP): token
auth (anonymous and basic -> bearer), basic auth, manifest lists and platforms, retries
on 5xx, resumed downloads (HTTP Range), verification, warm pulls, push, progress."""
from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import tarfile
import threading
import urllib.parse

import pytest

from pyruntime.image import ImageStore
from pyruntime.image.errors import DigestMismatch, ImageNotFound, PlatformNotFound, RegistryError
from pyruntime.image.manifest import (DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LIST,
                                      DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP,
                                      OCI_MANIFEST)
from pyruntime.image.progress import PullProgress
from pyruntime.image.registry import is_loopback, parse_challenge


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """(gzip blob, diff_id) of a layer holding `files`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), sha(raw)


class FakeRegistry:
    """A minimal distribution-API registry. `auth`: None, "basic" or "bearer" (a token
    service at /token, which wants basic credentials when `users` is set)."""

    def __init__(self, auth: str | None = None, users: dict[str, str] | None = None,
                 tls: tuple[str, str] | None = None) -> None:
        self.auth = auth
        self.users = users or {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.uploads: dict[str, bytes] = {}
        self.tokens: set[str] = set()
        self.log: list[tuple[str, str, dict]] = []
        self.fail_next: list[int] = []          # statuses to answer the next blob GETs with
        self.cut_blob_at: int | None = None     # send only this many bytes of a larger blob
        self.cuts_left = 0
        self.honour_range = True
        self.corrupt: set[str] = set()          # blobs served with a flipped byte
        self.lock = threading.Lock()
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                registry.handle(self, "GET")

            def do_HEAD(self):
                registry.handle(self, "HEAD")

            def do_POST(self):
                registry.handle(self, "POST")

            def do_PUT(self):
                registry.handle(self, "PUT")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---- content
    def add_image(self, repo: str, tag: str | None, layers: list[tuple[bytes, str]],
                  cmd: list[str], arch: str = "amd64", variant: str | None = None,
                  docker: bool = False) -> str:
        config = {"architecture": arch, "os": "linux", "config": {"Cmd": cmd},
                  "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]}}
        if variant:
            config["variant"] = variant
        config_bytes = json.dumps(config).encode()
        self.blobs[sha(config_bytes)] = config_bytes
        for blob, _ in layers:
            self.blobs[sha(blob)] = blob
        manifest = {"schemaVersion": 2,
                    "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
                    "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                               "digest": sha(config_bytes), "size": len(config_bytes)},
                    "layers": [{"mediaType": DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP,
                                "digest": sha(b), "size": len(b)} for b, _ in layers]}
        data = json.dumps(manifest).encode()
        self.manifests[(repo, sha(data))] = (data, manifest["mediaType"])
        if tag:
            self.manifests[(repo, tag)] = (data, manifest["mediaType"])
        return sha(data)

    def add_index(self, repo: str, tag: str, entries: list[tuple[str, str, str | None]],
                  docker: bool = False) -> str:
        manifests = []
        for digest, arch, variant in entries:
            data, media_type = self.manifests[(repo, digest)]
            platform = {"architecture": arch, "os": "linux"}
            if variant:
                platform["variant"] = variant
            manifests.append({"mediaType": media_type, "digest": digest, "size": len(data),
                              "platform": platform})
        media_type = DOCKER_LIST if docker else OCI_INDEX
        data = json.dumps({"schemaVersion": 2, "mediaType": media_type,
                           "manifests": manifests}).encode()
        self.manifests[(repo, tag)] = (data, media_type)
        self.manifests[(repo, sha(data))] = (data, media_type)
        return sha(data)

    def blob_gets(self) -> list[tuple[str, dict]]:
        return [(p, h) for m, p, h in self.log if m == "GET" and "/blobs/" in p]

    # ---- the protocol
    def _authorized(self, h) -> bool:
        header = h.headers.get("Authorization", "")
        if self.auth is None:
            return True
        if self.auth == "basic":
            return self._basic_ok(header)
        return header.startswith("Bearer ") and header[7:] in self.tokens

    def _basic_ok(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return self.users.get(user) == password

    def _send(self, h, status: int, body: bytes = b"", headers: dict | None = None,
              head: bool = False) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head and body:
            h.wfile.write(body)

    def handle(self, h, method: str) -> None:
        url = urllib.parse.urlsplit(h.path)
        with self.lock:
            self.log.append((method, h.path, dict(h.headers)))
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if url.path == "/token":
            query = urllib.parse.parse_qs(url.query)
            if self.users and not self._basic_ok(h.headers.get("Authorization", "")):
                return self._send(h, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"bad login"}]}')
            assert query.get("service") == ["fake"], query
            token = secrets.token_hex(8)
            self.tokens.add(token)
            return self._send(h, 200, json.dumps({"token": token}).encode(),
                              {"Content-Type": "application/json"})
        if not self._authorized(h):
            challenge = ('Basic realm="fake"' if self.auth == "basic" else
                         f'Bearer realm="{self.scheme}://{self.host}/token",service="fake",'
                         f'scope="repository:x:pull"')
            return self._send(h, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                              {"WWW-Authenticate": challenge})
        m = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", url.path)
        if m:
            repo, ref = m.groups()
            if method == "PUT":
                self.manifests[(repo, ref)] = (body, h.headers["Content-Type"])
                self.manifests[(repo, sha(body))] = (body, h.headers["Content-Type"])
                return self._send(h, 201, headers={"Docker-Content-Digest": sha(body)})
            if (repo, ref) not in self.manifests:
                return self._send(h, 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')
            data, media_type = self.manifests[(repo, ref)]
            return self._send(h, 200, data, {"Content-Type": media_type,
                                             "Docker-Content-Digest": sha(data)}, method == "HEAD")
        m = re.fullmatch(r"/v2/(.+)/blobs/uploads/([^/]*)", url.path)
        if m:
            if method == "POST":
                uid = secrets.token_hex(4)
                self.uploads[uid] = b""
                return self._send(h, 202, headers={"Location": f"/v2/{m.group(1)}/blobs/uploads/{uid}?state=x"})
            digest = urllib.parse.parse_qs(url.query)["digest"][0]
            if sha(body) != digest:
                return self._send(h, 400, b'{"errors":[{"code":"DIGEST_INVALID"}]}')
            self.blobs[digest] = body
            return self._send(h, 201, headers={"Docker-Content-Digest": digest})
        m = re.fullmatch(r"/v2/(.+)/blobs/(sha256:[0-9a-f]{64})", url.path)
        if m:
            digest = m.group(2)
            if digest not in self.blobs:
                return self._send(h, 404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
            data = self.blobs[digest]
            if digest in self.corrupt:
                data = bytes([data[0] ^ 1]) + data[1:]
            if method == "HEAD":
                return self._send(h, 200, headers={"Content-Length": str(len(data))}, head=True)
            with self.lock:
                fail = self.fail_next.pop(0) if self.fail_next else None
            if fail:
                return self._send(h, fail, b'{"errors":[{"code":"UNAVAILABLE"}]}')
            start = 0
            rng = h.headers.get("Range")
            if rng and self.honour_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            part = data[start:]
            headers = {"Content-Length": str(len(part))}
            status = 200
            if start:
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            if self.cut_blob_at is not None and self.cuts_left > 0 and len(part) > self.cut_blob_at:
                self.cuts_left -= 1
                h.send_response(status)
                for k, v in headers.items():
                    h.send_header(k, v)
                h.end_headers()
                h.wfile.write(part[:self.cut_blob_at])
                h.wfile.flush()
                h.close_connection = True
                return
            return self._send(h, status, part, headers)
        if url.path == "/v2/":
            return self._send(h, 200, b"{}")
        self._send(h, 404)


@pytest.fixture
def registry():
    made = []

    def make(**kwargs) -> FakeRegistry:
        r = FakeRegistry(**kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def store(tmp_path):
    def make(name: str = "store", **kwargs) -> ImageStore:
        return ImageStore(str(tmp_path / name), snapshot_mode="copy", backoff=0.01,
                          auth_file=str(tmp_path / "no-auth.json"), **kwargs)
    return make


def two_layers():
    return [layer({"etc/a": b"a" * 5000, "bin/tool": b"tool"}), layer({"etc/b": os.urandom(300_000)})]


def test_pull_with_anonymous_token_auth(registry, store, tmp_path):
    reg = registry(auth="bearer")
    layers = two_layers()
    digest = reg.add_image("team/app", "1", layers, ["/bin/tool"])
    s = store()
    info = s.pull(f"{reg.host}/team/app:1")
    assert info["digest"] == digest and info["names"] == [f"{reg.host}/team/app:1"]
    assert info["repo_digests"] == [f"{reg.host}/team/app@{digest}"]
    assert info["config"]["Cmd"] == ["/bin/tool"]
    token_requests = [p for m, p, _ in reg.log if p.startswith("/token")]
    assert token_requests and "scope=repository%3Ateam%2Fapp%3Apull" in token_requests[0]
    rootfs = s.create_snapshot(f"{reg.host}/team/app:1", "c1")
    assert open(os.path.join(rootfs, "bin/tool"), "rb").read() == b"tool"
    assert len(open(os.path.join(rootfs, "etc/b"), "rb").read()) == 300_000
    s.remove_snapshot("c1")


def test_basic_to_bearer_auth(registry, store):
    reg = registry(auth="bearer", users={"alice": "s3cret"})
    reg.add_image("app", "1", two_layers(), ["sh"])
    with pytest.raises(RegistryError, match="--creds"):
        store("a").pull(f"{reg.host}/app:1")
    with pytest.raises(RegistryError, match="401"):
        store("b").pull(f"{reg.host}/app:1", credentials=("alice", "wrong"))
    info = store("c").pull(f"{reg.host}/app:1", credentials=("alice", "s3cret"))
    assert info["config"]["Cmd"] == ["sh"]
    token_auth = [h.get("Authorization", "") for m, p, h in reg.log if p.startswith("/token")]
    assert token_auth[-1] == "Basic " + base64.b64encode(b"alice:s3cret").decode()


def test_basic_auth_and_auth_file(registry, store, tmp_path):
    reg = registry(auth="basic", users={"bob": "pw"})
    reg.add_image("app", "1", two_layers(), ["sh"])
    with pytest.raises(RegistryError, match="needs a login"):
        store("a").pull(f"{reg.host}/app:1")
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {reg.host: {"auth": base64.b64encode(b"bob:pw").decode()}}}))
    s = ImageStore(str(tmp_path / "b"), snapshot_mode="copy", auth_file=str(auth_file))
    assert s.pull(f"{reg.host}/app:1")["config"]["Cmd"] == ["sh"]


@pytest.mark.parametrize("docker", [False, True])
def test_manifest_list_and_platforms(registry, store, docker):
    reg = registry()
    amd = reg.add_image("app", None, [layer({"arch": b"amd64"})], ["amd"], docker=docker)
    arm = reg.add_image("app", None, [layer({"arch": b"arm64"})], ["arm"], arch="arm64",
                        variant="v8", docker=docker)
    armv7 = reg.add_image("app", None, [layer({"arch": b"armv7"})], ["v7"], arch="arm",
                          variant="v7", docker=docker)
    index = reg.add_index("app", "multi", [(amd, "amd64", None), (arm, "arm64", "v8"),
                                            (armv7, "arm", "v7")], docker=docker)
    s = store()
    info = s.pull(f"{reg.host}/app:multi", platform="linux/amd64")
    assert info["digest"] == amd and info["repo_digests"] == [f"{reg.host}/app@{index}"]
    assert s.pull(f"{reg.host}/app:multi", platform="linux/arm64")["digest"] == arm
    assert s.pull(f"{reg.host}/app:multi", platform="linux/arm/v7")["config"]["Cmd"] == ["v7"]
    gets_before = len(reg.blob_gets())
    with pytest.raises(PlatformNotFound, match="linux/s390x"):
        store("other").pull(f"{reg.host}/app:multi", platform="linux/s390x")
    assert len(reg.blob_gets()) == gets_before


def test_single_manifest_for_another_platform_stores_nothing(registry, store):
    reg = registry()
    layers = [layer({"x": b"x"})]
    reg.add_image("app", "arm", layers, ["sh"], arch="arm64")
    s = store()
    with pytest.raises(PlatformNotFound, match="linux/arm64"):
        s.pull(f"{reg.host}/app:arm")
    assert s.list() == [] and list(s.blobs.digests()) == []
    assert not [p for p, _ in reg.blob_gets() if p.endswith(sha(layers[0][0]))]


def test_retries_on_5xx(registry, store):
    reg = registry()
    reg.add_image("app", "1", two_layers(), ["sh"])
    reg.fail_next = [503, 502, 500]
    assert store().pull(f"{reg.host}/app:1")["config"]["Cmd"] == ["sh"]
    reg.fail_next = [503] * 20
    with pytest.raises(RegistryError, match="503"):
        store("b", retries=2).pull(f"{reg.host}/app:1")


def test_cut_download_resumes_with_range(registry, store):
    reg = registry()
    layers = [layer({"big": os.urandom(500_000)})]
    reg.add_image("app", "1", layers, ["sh"])
    big = sha(layers[0][0])
    reg.cut_blob_at, reg.cuts_left = 100_000, 1
    s = store()
    s.pull(f"{reg.host}/app:1")
    ranges = [h.get("Range") for p, h in reg.blob_gets() if p.endswith(big)]
    assert ranges == [None, "bytes=100000-"]
    assert s.blobs.has(big, len(layers[0][0]))


def test_registry_ignoring_range_restarts_cleanly(registry, store):
    reg = registry()
    layers = [layer({"big": os.urandom(200_000)})]
    reg.add_image("app", "1", layers, ["sh"])
    reg.cut_blob_at, reg.cuts_left, reg.honour_range = 50_000, 1, False
    s = store()
    s.pull(f"{reg.host}/app:1")
    assert s.blobs.has(sha(layers[0][0]))


def test_interrupted_pull_resumes_in_the_next_pull(registry, store):
    reg = registry()
    layers = [layer({"big": os.urandom(400_000)}), layer({"small": b"s"})]
    reg.add_image("app", "1", layers, ["sh"])
    big, small = sha(layers[0][0]), sha(layers[1][0])
    reg.cut_blob_at, reg.cuts_left = 150_000, 100
    s = store(retries=0)
    with pytest.raises(RegistryError, match="stops at|keeps failing"):
        s.pull(f"{reg.host}/app:1")
    assert s.list() == []
    assert s.blobs.has(small)  # finished blobs are kept
    reg.cuts_left = 0
    before = len(reg.blob_gets())
    s.pull(f"{reg.host}/app:1")
    later = reg.blob_gets()[before:]
    assert not [p for p, _ in later if p.endswith(small)]  # not downloaded again
    assert [h.get("Range") for p, h in later if p.endswith(big)] == ["bytes=150000-"]


def test_corrupt_blob_is_rejected_and_nothing_stored(registry, store):
    reg = registry()
    layers = [layer({"x": b"x" * 1000})]
    reg.add_image("app", "1", layers, ["sh"])
    reg.corrupt.add(sha(layers[0][0]))
    s = store()
    with pytest.raises(DigestMismatch, match=sha(layers[0][0])):
        s.pull(f"{reg.host}/app:1")
    assert s.list() == [] and not s.blobs.has(sha(layers[0][0]))


def test_manifest_not_matching_its_digest_is_rejected(registry, store):
    reg = registry()
    digest = reg.add_image("app", "1", two_layers(), ["sh"])
    data, media_type = reg.manifests[("app", "1")]
    reg.manifests[("app", digest)] = (data.replace(b'"schemaVersion": 2', b'"schemaVersion":2'),
                                      media_type)
    with pytest.raises(DigestMismatch):
        store().pull(f"{reg.host}/app@{digest}")


def test_warm_pull_downloads_no_blob_and_pull_by_digest(registry, store):
    reg = registry()
    digest = reg.add_image("app", "1", two_layers(), ["sh"])
    s = store()
    s.pull(f"{reg.host}/app:1")
    before = len(reg.blob_gets())
    s.pull(f"{reg.host}/app:1", policy="Always")
    assert len(reg.blob_gets()) == before
    info = s.pull(f"{reg.host}/app@{digest}")
    assert info["digest"] == digest and f"{reg.host}/app@{digest}" in info["names"]


def test_not_found(registry, store):
    reg = registry()
    with pytest.raises(ImageNotFound, match="app:nope"):
        store().pull(f"{reg.host}/app:nope")


def test_push_then_pull(registry, store, tmp_path):
    reg = registry(auth="bearer")
    src = store("src")
    root = tmp_path / "tree"
    os.makedirs(root / "bin")
    (root / "bin" / "hello").write_text("hi")
    src.import_path(str(root), "local:1", changes=["CMD /bin/hello"])
    digest = src.push("local:1", f"{reg.host}/pushed/app:v1")
    assert reg.manifests[("pushed/app", "v1")][0] == src.blobs.read_bytes(digest)
    scopes = [p for m, p, _ in reg.log if p.startswith("/token")]
    assert any("pull%2Cpush" in p for p in scopes)
    posts = len([1 for m, p, _ in reg.log if m == "POST"])
    src.push("local:1", f"{reg.host}/pushed/app:v1")  # blobs exist: nothing uploaded again
    assert len([1 for m, p, _ in reg.log if m == "POST"]) == posts
    dst = store("dst")
    assert dst.pull(f"{reg.host}/pushed/app:v1")["digest"] == digest


def test_progress_display(registry, store):
    reg = registry()
    reg.add_image("app", "1", two_layers(), ["sh"])
    out = io.StringIO()
    progress = PullProgress("pulling app", stream=out, enabled=True)
    store().pull(f"{reg.host}/app:1", progress=progress)
    text = out.getvalue()
    assert "layers 2/2" in text and "pulling app" in text and "kB" in text


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_loopback_registry_with_tls(registry, store, tmp_path):
    """A loopback registry is tried over HTTPS first; its self-signed certificate is
    accepted there (loopback counts as insecure)."""
    key, cert = str(tmp_path / "key.pem"), str(tmp_path / "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost"], check=True,
                   capture_output=True)
    reg = registry(auth="bearer", tls=(cert, key))
    digest = reg.add_image("app", "1", two_layers(), ["sh"])
    assert store().pull(f"{reg.host}/app:1")["digest"] == digest
    assert [p for m, p, _ in reg.log if p.startswith("/token")]


def test_loopback_and_challenges():
    for host in ("localhost", "localhost:5000", "127.0.0.1:80", "127.1.2.3", "[::1]:5000"):
        assert is_loopback(host), host
    for host in ("example.com", "10.0.0.1:5000", "docker.io", "[2001:db8::1]:5000"):
        assert not is_loopback(host), host
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push"')
    assert scheme == "bearer" and params == {"realm": "https://auth.example/token",
                                             "service": "registry.example",
                                             "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})
