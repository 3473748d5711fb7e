"""Talking to registries with the OCI distribution API: pulling (tags, digests,
manifest lists, parallel resumable layer downloads) and pushing (monolithic uploads).

Standard library only. Authentication follows the registry's `WWW-Authenticate`
challenge: `Bearer realm=...,service=...,scope=...` gets a token from the realm
(anonymously, or with the user's credentials as basic auth), `Basic` sends the
credentials on every request. Plain HTTP is used only for registries marked insecure or
on loopback (127.0.0.0/8, ::1, localhost), and only after HTTPS failed there. 5xx answers,
429 and connection errors are retried with exponential back-off; a download cut off
half-way resumes from where it stopped (HTTP Range) in the store's ingest area, also in
a later pull, and blobs already in the store are not fetched at all.
"""
from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

from pyruntime.image.blobs import BlobStore
from pyruntime.image.digest import verify_bytes
from pyruntime.image.errors import (DigestMismatch, ImageError, ImageNotFound, ManifestError,
                                    RegistryError)
from pyruntime.image.manifest import (ACCEPT, MAX_DOCUMENT, Index, Manifest, Platform,
                                      check_config_platform, parse_config, parse_document,
                                      select_manifest)
from pyruntime.image.progress import PullProgress
from pyruntime.image.reference import Reference

USER_AGENT = "pyruntime-image/0.1"
#: Docker Hub's registry API lives on another host than its name.
_HOST_ALIASES = {"docker.io": "registry-1.docker.io"}
_CHUNK = 1 << 20
_MAX_REDIRECTS = 5
_MAX_NESTING = 4
#: errors worth another try: the network, not the registry's considered answer
_TRANSIENT = (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout,
              http.client.HTTPException, ssl.SSLError, OSError)


def is_loopback(domain: str) -> bool:
    """Whether a registry host (with optional port) is on this machine's loopback."""
    host = domain
    if host.startswith("["):
        host = host[1:host.find("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Credentials:
    username: str
    password: str

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def load_auth_file(path: str) -> dict[str, Credentials]:
    """Credentials from a Docker/Podman auth file (`{"auths": {"host": {"auth":
    base64("user:pass")}}}`), by registry host (`docker.io` for Docker Hub)."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ImageError(f"{path}: cannot read the auth file: {e}") from None
    out: dict[str, Credentials] = {}
    for host, entry in (doc.get("auths") or {}).items():
        if not isinstance(entry, dict) or not entry.get("auth"):
            continue
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ImageError(f"{path}: the auth entry for {host} is not base64 user:password") from None
        name = urllib.parse.urlsplit(host).netloc if "://" in host else host.rstrip("/")
        if name in ("index.docker.io", "registry-1.docker.io"):
            name = "docker.io"
        out[name] = Credentials(user, password)
    return out


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://x/token",service="x",scope="repository:a:pull"` ->
    ("bearer", {realm, service, scope}). Quoted values may hold commas."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        while i < len(rest) and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            i += 1
            value = []
            while i < len(rest) and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < len(rest):
                    i += 1
                value.append(rest[i])
                i += 1
            i += 1
            params[key] = "".join(value)
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return scheme.lower(), params


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Redirects are followed by hand: the Authorization header must not follow a blob
    # download to another host (object storage rejects or, worse, logs it).
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Response:
    """A finished or streaming HTTP response, the same for successes and errors."""

    def __init__(self, raw: Any, url: str) -> None:
        self.raw = raw
        self.url = url
        self.status: int = getattr(raw, "status", None) or raw.code
        self.headers = raw.headers

    def read(self, n: int = -1) -> bytes:
        return self.raw.read(n)

    def close(self) -> None:
        try:
            self.raw.close()
        except Exception:
            pass

    def error_text(self) -> str:
        """The registry's own error message, if its body has one."""
        try:
            body = self.raw.read(65536)
            doc = json.loads(body)
            errors = doc.get("errors") or []
            parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
                     for e in errors if isinstance(e, dict)]
            return "; ".join(parts) or body.decode(errors="replace")[:200]
        except Exception:
            return ""


class RegistryClient:
    """One registry host. Thread-safe: tokens are shared under a lock."""

    #: scheme chosen per insecure host, remembered for the process (HTTPS, else HTTP)
    _schemes: dict[str, str] = {}

    def __init__(self, domain: str, *, insecure: bool = False,
                 credentials: Credentials | None = None, timeout: float = 60.0,
                 retries: int = 5, backoff: float = 0.5) -> None:
        self.domain = domain
        self.host = _HOST_ALIASES.get(domain, domain)
        self.insecure = insecure or is_loopback(domain)
        self.credentials = credentials
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._tokens: dict[str, str] = {}
        self._basic = False
        self._lock = threading.Lock()
        self._opener_made: urllib.request.OpenerDirector | None = None

    @property
    def _opener(self) -> urllib.request.OpenerDirector:
        # Made on first use: loading the system's CA certificates takes ~30 ms, which an
        # insecure (loopback) registry never needs.
        if self._opener_made is None:
            if self.insecure:
                # Marked insecure (or on loopback): a self-signed certificate is accepted.
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                context = ssl.create_default_context()
            self._opener_made = urllib.request.build_opener(
                _NoRedirect(), urllib.request.HTTPSHandler(context=context))
        return self._opener_made

    # ------------------------------------------------------------------ plumbing
    def _base(self) -> str:
        if not self.insecure:
            return f"https://{self.host}"
        scheme = self._schemes.get(self.host) or self._probe_scheme()
        return f"{scheme}://{self.host}"

    def _probe_scheme(self) -> str:
        """HTTPS first, then plain HTTP (an insecure or loopback registry only). The
        answer is remembered only when it is definite: a TLS answer, or a server that
        does not speak TLS; a registry that is down is asked again next time."""
        try:
            req = urllib.request.Request(f"https://{self.host}/v2/",
                                         headers={"User-Agent": USER_AGENT})
            try:
                self._opener.open(req, timeout=min(self.timeout, 10)).close()
            except urllib.error.HTTPError:
                pass  # any HTTP answer over TLS means HTTPS works
            scheme = "https"
        except (urllib.error.URLError, ssl.SSLError, ConnectionError, OSError,
                http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            if not isinstance(reason, (ssl.SSLError, ConnectionResetError,
                                       http.client.HTTPException)):
                return "http"  # refused or unreachable: say nothing for later
            scheme = "http"
        self._schemes[self.host] = scheme
        return scheme

    def _sleep(self, attempt: int, retry_after: str | None = None) -> None:
        delay = min(self.backoff * (2 ** attempt), 30.0)
        if retry_after and retry_after.isdigit():
            delay = min(max(delay, float(retry_after)), 60.0)
        time.sleep(delay)

    def request(self, method: str, path: str, *, scope: str,
                headers: dict[str, str] | None = None,
                body: bytes | Callable[[], BinaryIO] | None = None,
                ok: tuple[int, ...] = (200,), what: str = "") -> _Response:
        """Send a request, handling auth challenges, redirects and retries. Returns
        the response when its status is in `ok` or is a 4xx the caller may want to
        see (404, 416); raises RegistryError for the rest."""
        url = path if "://" in path else self._base() + path
        redirects = 0
        auth_tries = 0
        attempt = 0
        same_host = True
        while True:
            hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
            if same_host:
                auth = self._auth_header(scope)
                if auth:
                    hdrs["Authorization"] = auth
            data: Any = body() if callable(body) else body
            req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
            try:
                try:
                    resp = _Response(self._opener.open(req, timeout=self.timeout), url)
                except urllib.error.HTTPError as e:
                    resp = _Response(e, url)
            except _TRANSIENT as e:
                if isinstance(getattr(e, "reason", e), ssl.SSLCertVerificationError):
                    raise RegistryError(f"{what or url}: the TLS certificate of registry "
                                        f"{self.domain} is not trusted ({e.reason}); if you "
                                        "trust it anyway, use --insecure") from None
                if attempt >= self.retries:
                    raise RegistryError(f"{what or url}: cannot reach registry {self.domain}: "
                                        f"{getattr(e, 'reason', e)} (after {attempt + 1} tries)") from None
                self._sleep(attempt)
                attempt += 1
                continue
            finally:
                if hasattr(data, "close"):
                    data.close()
            if resp.status in ok:
                return resp
            if resp.status == 401 and same_host:
                challenge = resp.headers.get("WWW-Authenticate", "")
                resp.close()
                if auth_tries >= 2:
                    raise RegistryError(f"{what or url}: registry {self.domain} refused the "
                                        "credentials (401 Unauthorized)"
                                        + ("" if self.credentials else
                                           "; it needs a login: give --creds USER:PASSWORD"))
                auth_tries += 1
                self._authenticate(challenge, scope, what or url)
                continue
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.headers.get("Location")
                resp.close()
                if not location or redirects >= _MAX_REDIRECTS:
                    raise RegistryError(f"{what or url}: too many redirects")
                redirects += 1
                new = urllib.parse.urljoin(url, location)
                same_host = urllib.parse.urlsplit(new).netloc == urllib.parse.urlsplit(url).netloc \
                    and same_host
                url = new
                if resp.status == 303:
                    method, body = "GET", None
                continue
            if resp.status >= 500 or resp.status == 429:
                retry_after = resp.headers.get("Retry-After")
                text = resp.error_text()
                resp.close()
                if attempt >= self.retries:
                    raise RegistryError(f"{what or url}: registry {self.domain} answered "
                                        f"{resp.status} {text} (after {attempt + 1} tries)")
                self._sleep(attempt, retry_after)
                attempt += 1
                continue
            if resp.status in (404, 416):
                return resp
            text = resp.error_text()
            resp.close()
            raise RegistryError(f"{what or url}: registry {self.domain} answered {resp.status}"
                                f"{': ' + text if text else ''}")

    def _auth_header(self, scope: str) -> str | None:
        with self._lock:
            if scope in self._tokens:
                return f"Bearer {self._tokens[scope]}"
            if self._basic and self.credentials:
                return self.credentials.basic()
        return None

    def _authenticate(self, challenge: str, scope: str, what: str) -> None:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.credentials is None:
                raise RegistryError(f"{what}: registry {self.domain} needs a login (basic "
                                    "auth): give --creds USER:PASSWORD")
            with self._lock:
                self._basic = True
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"{what}: registry {self.domain} asks for unsupported "
                                f"authentication {challenge!r}")
        query = {"service": params["service"]} if params.get("service") else {}
        # Our scope, which covers what we are about to do (push needs pull,push).
        query["scope"] = scope
        realm = params["realm"]
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"{what}: token realm {realm!r} is not an http(s) URL")
        if realm.startswith("http://") and not (self.insecure or
                                                is_loopback(urllib.parse.urlsplit(realm).netloc)):
            raise RegistryError(f"{what}: refusing to send credentials to the plain-HTTP "
                                f"token service {realm} (mark the registry insecure)")
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {"User-Agent": USER_AGENT}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.basic()
        for attempt in range(self.retries + 1):
            try:
                try:
                    raw = self._opener.open(urllib.request.Request(url, headers=headers),
                                            timeout=self.timeout)
                except urllib.error.HTTPError as e:
                    resp = _Response(e, url)
                    if resp.status >= 500 and attempt < self.retries:
                        resp.close()
                        self._sleep(attempt)
                        continue
                    text = resp.error_text()
                    resp.close()
                    hint = "" if self.credentials else " (no credentials were given: --creds)"
                    raise RegistryError(f"{what}: the token service {realm} answered "
                                        f"{resp.status}{': ' + text if text else ''}{hint}") from None
                with raw:
                    doc = json.loads(raw.read(1 << 20))
                break
            except _TRANSIENT as e:
                if attempt >= self.retries:
                    raise RegistryError(f"{what}: cannot reach the token service {realm}: "
                                        f"{getattr(e, 'reason', e)}") from None
                self._sleep(attempt)
            except ValueError:
                raise RegistryError(f"{what}: the token service {realm} answered no JSON") from None
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{what}: the token service {realm} gave no token")
        with self._lock:
            self._tokens[scope] = token

    # ------------------------------------------------------------------ reading
    def get_manifest(self, path: str, reference: str, what: str) -> tuple[bytes, str, str | None]:
        """(bytes, media type, Docker-Content-Digest) of a manifest or index."""
        resp = self.request("GET", f"/v2/{path}/manifests/{reference}", scope=_pull(path),
                            headers={"Accept": ACCEPT}, what=what)
        try:
            if resp.status == 404:
                raise ImageNotFound(f"{what}: not found in registry {self.domain} "
                                    f"({resp.error_text() or '404'})")
            data = resp.read(MAX_DOCUMENT + 1)
            if len(data) > MAX_DOCUMENT:
                raise ManifestError(f"{what}: the manifest is larger than {MAX_DOCUMENT} bytes")
            media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
            return data, media_type, resp.headers.get("Docker-Content-Digest")
        finally:
            resp.close()

    def get_blob_bytes(self, path: str, digest: str, size: int, what: str) -> bytes:
        """A small blob (a config), verified."""
        if size > MAX_DOCUMENT:
            raise ManifestError(f"{what}: {size} bytes is too large for a config")
        resp = self.request("GET", f"/v2/{path}/blobs/{digest}", scope=_pull(path), what=what)
        try:
            if resp.status != 200:
                raise RegistryError(f"{what}: blob {digest} not found in registry {self.domain}")
            data = resp.read(size + 1)
        finally:
            resp.close()
        verify_bytes(data, digest, size, what)
        return data

    def fetch_blob(self, path: str, digest: str, size: int, blobs: BlobStore, what: str,
                   progress: PullProgress | None = None) -> None:
        """Download a blob into the store, resuming a partial download (HTTP Range)
        after an interruption, in this pull or an earlier one."""
        mismatches = 0
        attempt = 0
        with blobs.partial(digest, size, what) as partial:
            while not partial.done:
                headers = {}
                if 0 < partial.offset < size:
                    headers["Range"] = f"bytes={partial.offset}-"
                if partial.offset == size:
                    try:
                        partial.commit()
                        break
                    except DigestMismatch:
                        mismatches += 1  # the partial was bad: restart() ran; fetch anew
                        if mismatches > 1:
                            raise
                        continue
                resp = self.request("GET", f"/v2/{path}/blobs/{digest}", scope=_pull(path),
                                    headers=headers, ok=(200, 206), what=what)
                try:
                    if resp.status == 404:
                        raise RegistryError(f"{what}: blob {digest} not found in registry "
                                            f"{self.domain}")
                    if resp.status == 416:
                        partial.restart()  # our partial is longer than the blob: start over
                        continue
                    if resp.status == 200 and partial.offset:
                        partial.restart()  # the registry ignored the Range: whole blob
                    elif resp.status == 206 and not (resp.headers.get("Content-Range") or "") \
                            .startswith(f"bytes {partial.offset}-"):
                        partial.restart()
                        continue
                    if progress:
                        progress.reset(digest, partial.offset)
                    try:
                        while chunk := resp.read(_CHUNK):
                            partial.write(chunk)
                            if progress:
                                progress.advance(digest, len(chunk))
                    except _TRANSIENT as e:
                        # Cut off half-way: what arrived is kept; the next try resumes.
                        if attempt >= self.retries:
                            raise RegistryError(f"{what}: download of {digest} from "
                                                f"{self.domain} keeps failing: {e}") from None
                        self._sleep(attempt)
                        attempt += 1
                        continue
                finally:
                    resp.close()
                if partial.offset < size:
                    if attempt >= self.retries:
                        raise RegistryError(f"{what}: download of {digest} from {self.domain} "
                                            f"stops at {partial.offset} of {size} bytes")
                    self._sleep(attempt)
                    attempt += 1
                    continue
                try:
                    partial.commit()
                except DigestMismatch:
                    mismatches += 1
                    if mismatches > 1:
                        raise
        if progress:
            progress.done(digest)

    # ------------------------------------------------------------------ writing
    def blob_exists(self, path: str, digest: str, scope: str) -> bool:
        resp = self.request("HEAD", f"/v2/{path}/blobs/{digest}", scope=scope, ok=(200,),
                            what=f"{self.domain}/{path}@{digest}")
        resp.close()
        return resp.status == 200

    def push_blob(self, path: str, digest: str, size: int, opener: Callable[[], BinaryIO],
                  what: str) -> None:
        """Upload a blob unless the registry has it: POST to start, then one PUT with
        the whole content and its digest (the monolithic upload)."""
        scope = _push(path)
        if self.blob_exists(path, digest, scope):
            return
        for attempt in range(self.retries + 1):
            resp = self.request("POST", f"/v2/{path}/blobs/uploads/", scope=scope,
                                headers={"Content-Length": "0"}, body=b"", ok=(202,),
                                what=what)
            location = resp.headers.get("Location")
            resp.close()
            if not location:
                raise RegistryError(f"{what}: registry {self.domain} gave no upload location")
            url = urllib.parse.urljoin(self._base() + f"/v2/{path}/blobs/uploads/", location)
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
            try:
                resp = self.request("PUT", url, scope=scope, body=opener, ok=(201,),
                                    headers={"Content-Type": "application/octet-stream",
                                             "Content-Length": str(size)}, what=what)
                resp.close()
                return
            except RegistryError:
                # An upload session is single-use: a failed PUT starts a new one.
                if attempt >= self.retries:
                    raise
                self._sleep(attempt)

    def put_manifest(self, path: str, reference: str, data: bytes, media_type: str,
                     what: str) -> str | None:
        resp = self.request("PUT", f"/v2/{path}/manifests/{reference}", scope=_push(path),
                            headers={"Content-Type": media_type}, body=data, ok=(201, 200),
                            what=what)
        resp.close()
        return resp.headers.get("Docker-Content-Digest")


def _pull(path: str) -> str:
    return f"repository:{path}:pull"


def _push(path: str) -> str:
    return f"repository:{path}:pull,push"


# --------------------------------------------------------------------------- pull and push
@dataclass
class PulledImage:
    manifest_digest: str
    repo_digest: str   # what the registry knows the image by (an index's digest, if any)


def pull_image(client: RegistryClient, ref: Reference, blobs: BlobStore, platform: Platform,
               progress: PullProgress | None = None, workers: int = 3) -> PulledImage:
    """Pull `ref` for `platform` into `blobs`: manifests and config first (and the
    platform checked: a wrong one stores nothing), then the layers the store lacks, in
    parallel. The manifest and config are stored last, so an image is only complete
    in the store when everything it needs is there."""
    what = str(ref)
    target = ref.digest or ref.tag or "latest"
    data, media_type, header_digest = client.get_manifest(ref.path, target, what)
    if ref.digest:
        verify_bytes(data, ref.digest, None, f"{what}: manifest")
        digest = ref.digest
    elif header_digest:
        verify_bytes(data, header_digest, None, f"{what}: manifest (Docker-Content-Digest)")
        digest = header_digest
    else:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    repo_digest = digest
    doc = parse_document(data, f"{what}: manifest {digest}", media_type)
    for _ in range(_MAX_NESTING):
        if not isinstance(doc, Index):
            break
        desc = select_manifest(doc, platform, what)
        data, media_type, _ = client.get_manifest(ref.path, desc.digest, what)
        verify_bytes(data, desc.digest, desc.size, f"{what}: manifest {desc.digest}")
        digest = desc.digest
        doc = parse_document(data, f"{what}: manifest {digest}", media_type or desc.media_type)
    if not isinstance(doc, Manifest):
        raise ManifestError(f"{what}: indexes nested more than {_MAX_NESTING} deep")
    manifest = doc
    if blobs.has(manifest.config.digest, manifest.config.size):
        config_bytes = blobs.read_bytes(manifest.config.digest)
    else:
        config_bytes = client.get_blob_bytes(ref.path, manifest.config.digest,
                                             manifest.config.size, f"{what}: config")
    config = parse_config(config_bytes, f"{what}: config {manifest.config.digest}")
    check_config_platform(config, platform, f"{what} ({digest})")
    if len(config["rootfs"]["diff_ids"]) != len(manifest.layers):
        raise ManifestError(f"{what}: {len(manifest.layers)} layers but the config has "
                            f"{len(config['rootfs']['diff_ids'])} diff_ids")
    sizes = {layer.digest: layer.size for layer in manifest.layers}
    present = {d for d, s in sizes.items() if blobs.has(d, s)}
    missing = [d for d in sizes if d not in present]
    if progress:
        progress.layers(sizes, present)
    if missing:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, len(missing)),
                                                   thread_name_prefix="pull") as pool:
            futures = [pool.submit(client.fetch_blob, ref.path, d, sizes[d], blobs,
                                   f"{what}: layer {d}", progress) for d in missing]
            errors = []
            for f in futures:
                try:
                    f.result()
                except BaseException as e:  # every download finishes or fails first
                    errors.append(e)
            if errors:
                raise errors[0]
    blobs.put_bytes(config_bytes, manifest.config.digest, manifest.config.size,
                    f"{what}: config")
    blobs.put_bytes(data, digest, None, f"{what}: manifest")
    return PulledImage(digest, repo_digest)


def push_image(client: RegistryClient, ref: Reference, blobs: BlobStore,
               manifest_digest: str) -> str:
    """Push an image from the store: its layers and config (skipping what the
    registry has), then its manifest under `ref`'s tag. Returns the manifest digest."""
    what = str(ref)
    data = blobs.read_bytes(manifest_digest, f"{what}: manifest")
    manifest = parse_document(data, f"{what}: manifest {manifest_digest}")
    if not isinstance(manifest, Manifest):
        raise ManifestError(f"{what}: {manifest_digest} is not an image manifest")
    for desc in list(manifest.layers) + [manifest.config]:
        if not blobs.has(desc.digest):
            raise ImageError(f"{what}: blob {desc.digest} is not in the store")
        client.push_blob(ref.path, desc.digest, desc.size,
                         lambda d=desc.digest: blobs.open(d), f"{what}: blob {desc.digest}")
    target = ref.tag or manifest_digest
    pushed = client.put_manifest(ref.path, target, data, manifest.media_type, what)
    if pushed and pushed != manifest_digest:
        raise RegistryError(f"{what}: the registry stored the manifest as {pushed}, not "
                            f"{manifest_digest}")
    return manifest_digest


__all__ = ["RegistryClient", "Credentials", "load_auth_file", "parse_challenge", "is_loopback",
           "pull_image", "push_image", "PulledImage"]
