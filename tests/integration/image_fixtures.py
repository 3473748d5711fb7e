"""Fixtures and builders of the image store's integration tests (import them into a test
module: `from .image_fixtures import image_store, ...`).

- `image_store(**options)`: an `ImageStore` in the test's directory; every snapshot it
  made (overlay mounts) is removed and the store deleted when the test ends, pass or fail.
- `busybox_layout`: an OCI layout of the session's busybox rootfs (Cmd `echo hi`).
- `docker_registry(auth=None|"htpasswd"|"token")`: Debian's `docker-registry`
  (distribution v2) on 127.0.0.1:<free port>, storage in the test's directory, stopped
  when the test ends. "htpasswd" is basic auth (bcrypt, `htpasswd -Bbn`); "token" is the
  registry's JWT token auth with a token service run by the test (basic -> bearer).
- `image_cli(store, *args)`: `pyruntime image` through `image_main` in a subprocess.
- builders: `layer_blob(entries)`, `build_layout(dir, layers, config, ref)`,
  `docker_save(layout, out, tags, as_tar)`.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from pyruntime.image import ImageStore
from pyruntime.image.layout import write_oci_layout

from . import REPO_ROOT

PYTHON = str(REPO_ROOT / ".venv" / "bin" / "python")
HELLO_CMD = ["/bin/sh", "-c", "echo hi"]
REGISTRY_USER, REGISTRY_PASSWORD = "tester", "s3cret-pw"


# --------------------------------------------------------------------------- the store
@pytest.fixture
def image_store(work_dir):
    made: list[ImageStore] = []

    def make(name: str = "store", **options) -> ImageStore:
        options.setdefault("backoff", 0.05)
        options.setdefault("auth_file", os.path.join(work_dir, "no-auth.json"))
        store = ImageStore(os.path.join(work_dir, name), **options)
        made.append(store)
        return store

    yield make
    for store in made:
        cleanup_store(store.root)


def cleanup_store(root: str) -> None:
    """Remove every snapshot of the store at `root` (unmounting), then the store."""
    store = ImageStore(root)
    for snap in store.snapshots():
        try:
            store.remove_snapshot(snap["id"])
        except Exception:  # noqa: BLE001 - the leak check reports what stays mounted
            pass
    subprocess.run(["rm", "-rf", "--one-file-system", root], capture_output=True)


def image_cli(store: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    code = ("import sys; from pyruntime.cli.image_cli import image_main; "
            "sys.exit(image_main(sys.argv[1:]))")
    return subprocess.run([PYTHON, "-c", code, "--store", store, *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def busybox_layout(busybox_rootfs, session_dir) -> str:
    path = os.path.join(session_dir, "busybox-layout")
    write_oci_layout(busybox_rootfs, path, {"Cmd": HELLO_CMD}, "busybox:hello", mtime=0)
    return path


# --------------------------------------------------------------------------- builders
def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_blob(entries: list[tuple]) -> tuple[bytes, str]:
    """(gzip blob, diff_id) of a layer: entries ("dir", name), ("file", name, data),
    ("symlink", name, target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, *rest in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, rest[0]
                tf.addfile(info)
            else:
                info.size, info.mode = len(rest[0]), 0o644
                tf.addfile(info, io.BytesIO(rest[0]))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), sha(raw)


def build_layout(directory: str, layers: list[tuple[bytes, str]], config: dict, ref: str) -> str:
    """An OCI layout of an image made of `layers` (gzip blob, diff_id), bottom first."""
    blobs = os.path.join(directory, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data: bytes) -> str:
        digest = sha(data)
        with open(os.path.join(blobs, digest.split(":")[1]), "wb") as f:
            f.write(data)
        return digest

    doc = {"architecture": "amd64", "os": "linux", "config": config,
           "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]}}
    config_bytes = json.dumps(doc).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": put(config_bytes), "size": len(config_bytes)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": put(blob), "size": len(blob)} for blob, _ in layers]}
    manifest_bytes = json.dumps(manifest).encode()
    digest = put(manifest_bytes)
    with open(os.path.join(directory, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {"mediaType": manifest["mediaType"], "digest": digest, "size": len(manifest_bytes),
             "annotations": {"io.containerd.image.name": ref}}]}, f)
    with open(os.path.join(directory, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return digest


def docker_save(layout: str, out: str, repo_tags: list[str], as_tar: bool) -> str:
    """A `docker save` archive made by hand from an OCI layout's image: manifest.json
    (Config, RepoTags, Layers), repositories, <config hex>.json, <n>/layer.tar
    (uncompressed), as a directory or a tarball."""
    index = json.load(open(os.path.join(layout, "index.json")))

    def blob(digest: str) -> str:
        return os.path.join(layout, "blobs", "sha256", digest.split(":")[1])

    manifest = json.load(open(blob(index["manifests"][0]["digest"])))
    work = out + ".d" if as_tar else out
    os.makedirs(work)
    config_name = manifest["config"]["digest"].split(":")[1] + ".json"
    shutil.copy(blob(manifest["config"]["digest"]), os.path.join(work, config_name))
    paths = []
    for layer in manifest["layers"]:
        with open(blob(layer["digest"]), "rb") as f:
            raw = gzip.decompress(f.read())
        layer_id = hashlib.sha256(raw).hexdigest()
        os.makedirs(os.path.join(work, layer_id))
        with open(os.path.join(work, layer_id, "layer.tar"), "wb") as f:
            f.write(raw)
        with open(os.path.join(work, layer_id, "VERSION"), "w") as f:
            f.write("1.0")
        paths.append(f"{layer_id}/layer.tar")
    with open(os.path.join(work, "manifest.json"), "w") as f:
        json.dump([{"Config": config_name, "RepoTags": repo_tags, "Layers": paths}], f)
    repositories: dict = {}
    for tag in repo_tags:
        name, _, t = tag.rpartition(":")
        repositories.setdefault(name, {})[t] = paths[-1].split("/")[0]
    with open(os.path.join(work, "repositories"), "w") as f:
        json.dump(repositories, f)
    if as_tar:
        with tarfile.open(out, "w") as tf:
            for name in sorted(os.listdir(work)):
                tf.add(os.path.join(work, name), name)
        shutil.rmtree(work)
    return out


# --------------------------------------------------------------------------- the registry
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TokenService:
    """The token service of a registry with `auth: token`: checks basic credentials
    and issues RS256 JWTs (signed with `openssl dgst`) carrying the x5c certificate the
    registry trusts (its rootcertbundle)."""

    def __init__(self, directory: str, service: str, issuer: str) -> None:
        self.key = os.path.join(directory, "token.key")
        self.cert = os.path.join(directory, "token.crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=token-service"],
                       check=True, capture_output=True, timeout=60)
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"],
                             check=True, capture_output=True, timeout=60).stdout
        self.x5c = base64.b64encode(der).decode()
        self.service, self.issuer = service, issuer
        self.requests: list[dict] = []
        svc = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                svc.handle(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def handle(self, h) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
        self.requests.append({"query": query, "auth": h.headers.get("Authorization", "")})
        auth = h.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
        if auth != expected:
            h.send_response(401)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": REGISTRY_USER, "aud": self.service,
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8),
                  "access": access}
        signing_input = f"{self._b64(json.dumps(header).encode())}.{self._b64(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                                   input=signing_input.encode(), capture_output=True,
                                   check=True, timeout=30).stdout
        body = json.dumps({"token": f"{signing_input}.{self._b64(signature)}",
                           "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


class DockerRegistry:
    def __init__(self, directory: str, auth: str | None) -> None:
        self.directory = directory
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.token: TokenService | None = None
        auth_yaml = ""
        if auth == "htpasswd":
            line = subprocess.run(["htpasswd", "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD],
                                  check=True, capture_output=True, text=True, timeout=60).stdout
            path = os.path.join(directory, "htpasswd")
            with open(path, "w") as f:
                f.write(line.strip() + "\n")
            auth_yaml = f"auth:\n  htpasswd:\n    realm: test-realm\n    path: {path}\n"
        elif auth == "token":
            self.token = TokenService(directory, "test-registry", "test-issuer")
            auth_yaml = (f"auth:\n  token:\n    realm: {self.token.realm}\n"
                         f"    service: test-registry\n    issuer: test-issuer\n"
                         f"    rootcertbundle: {self.token.cert}\n")
        config = os.path.join(directory, "config.yml")
        with open(config, "w") as f:
            f.write(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {os.path.join(directory, 'data')}
  delete:
    enabled: true
http:
  addr: {self.host}
  secret: {secrets.token_hex(16)}
{auth_yaml}""")
        self.log = open(os.path.join(directory, "registry.log"), "w+")
        self.proc = subprocess.Popen(["docker-registry", "serve", config], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # 401: up, and wants a login
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    self.log.seek(0)
                    pytest.fail(f"docker-registry did not start: {self.log.read()}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        if self.token:
            self.token.close()


@pytest.fixture
def docker_registry(work_dir):
    if shutil.which("docker-registry") is None:
        pytest.fail("docker-registry is not installed (apt-get install docker-registry; "
                    ".ci/setup installs it)")
    started: list[DockerRegistry] = []

    def start(auth: str | None = None) -> DockerRegistry:
        directory = os.path.join(work_dir, f"registry{len(started) + 1}")
        os.makedirs(directory)
        registry = DockerRegistry(directory, auth)
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop()


__all__ = ["image_store", "busybox_layout", "docker_registry", "image_cli", "cleanup_store",
           "layer_blob", "build_layout", "docker_save", "HELLO_CMD", "REGISTRY_USER",
           "REGISTRY_PASSWORD"]
