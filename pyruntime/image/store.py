"""`ImageStore`: the image store the pod layer and `pyruntime image` use.

On disk, under the store root (default `/var/lib/pyruntime/images`, or `$PYRUNTIME_STORE`):

    blobs/<alg>/<hex>          verified content: manifests, configs, layers
    ingest/                    downloads in progress (resumable) and temporary files
    images/<alg>/<hex>.json    one record per image, by manifest digest
    refs.json                  name (docker.io/library/busybox:latest) -> manifest digest
    layers/<alg>/<hex>/        unpacked layers by diff_id (overlay mode), shared
    snapshots/<id>/            containers' roots (record, upper and work dirs)
    lock, meta.lock            flock(2) locks

Content-adding operations (pull, import, snapshots) hold `lock` shared, garbage
collection (remove, prune) holds it exclusive, so nothing a pull is writing can be
collected under it; `meta.lock` serialises updates of refs.json and records. The root is
made mode 0700: unpacked layers hold setuid programs that only containers should run.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from pyruntime.image.blobs import BlobStore
from pyruntime.image.bundle import bundle_spec, write_spec
from pyruntime.image.digest import Digest, is_digest
from pyruntime.image.errors import (ImageError, ImageInUse, ImageNotFound, InvalidReference,
                                    ManifestError, SnapshotError)
from pyruntime.image.manifest import (Manifest, Platform, config_platform, parse_config,
                                      parse_document, parse_platform)
from pyruntime.image.reference import (ALWAYS, IF_NOT_PRESENT, NEVER, check_pull_policy,
                                       default_pull_policy, parse_reference)
from pyruntime.image.snapshot import (AUTO, COPY, OVERLAY, LayerRef, Snapshotter,
                                      check_snapshot_id)

if TYPE_CHECKING:
    from pyruntime.image.progress import PullProgress
    from pyruntime.image.registry import Credentials, RegistryClient

# The registry client (urllib, http.client, ssl: ~40 ms of imports) and the importer are
# imported where they are used: making a snapshot of a stored image needs neither.

DEFAULT_ROOT = "/var/lib/pyruntime/images"
STORE_ENV = "PYRUNTIME_STORE"

#: the keys `image_config` always returns, with their empty values
CONFIG_KEYS: dict[str, Any] = {"Entrypoint": [], "Cmd": [], "Env": [], "WorkingDir": "",
                               "User": "", "ExposedPorts": {}, "Labels": {}, "Volumes": {},
                               "StopSignal": ""}


def default_root() -> str:
    return os.environ.get(STORE_ENV) or DEFAULT_ROOT


class ImageStore:
    """The image store at `root` (None: $PYRUNTIME_STORE, else /var/lib/pyruntime/images).

    - `snapshot_mode`: "auto" (overlayfs when possible, else copies), "overlay", "copy";
    - `allow_devices`: make device nodes found in layers (root only; off by default);
    - `insecure_registries`: hosts (host[:port]) that may be reached over plain HTTP or
      with unverified TLS; loopback registries always may;
    - `credentials`: {registry host: (user, password)}; `auth_file`: a Docker/Podman
      auth file (default: $REGISTRY_AUTH_FILE, else ~/.docker/config.json, if present);
    - `retries`, `backoff`: for registry requests; `workers`: parallel layer downloads.
    """

    def __init__(self, root: str | None = None, *, snapshot_mode: str = AUTO,
                 allow_devices: bool = False, insecure_registries: Iterable[str] = (),
                 credentials: dict[str, tuple[str, str]] | None = None,
                 auth_file: str | None = None, retries: int = 5, backoff: float = 0.5,
                 workers: int = 3) -> None:
        self.root = os.path.abspath(root or default_root())
        self.blobs = BlobStore(self.root)
        self.snapshotter = Snapshotter(self.root, self.blobs, snapshot_mode, allow_devices)
        self.insecure_registries = set(insecure_registries)
        self.credentials = dict(credentials or {})
        self.auth_file = auth_file
        self.retries = retries
        self.backoff = backoff
        self.workers = workers
        self._clients: dict[tuple[str, bool], RegistryClient] = {}

    # ------------------------------------------------------------------ locks, metadata
    def _ensure_root(self) -> None:
        if not os.path.isdir(self.root):
            os.makedirs(os.path.dirname(self.root) or "/", exist_ok=True)
            try:
                os.mkdir(self.root, 0o700)
            except FileExistsError:
                pass

    @contextlib.contextmanager
    def _lock(self, name: str, exclusive: bool) -> Iterator[None]:
        self._ensure_root()
        fd = os.open(os.path.join(self.root, name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def _content_lock(self) -> contextlib.AbstractContextManager[None]:
        return self._lock("lock", exclusive=False)

    def _gc_lock(self) -> contextlib.AbstractContextManager[None]:
        return self._lock("lock", exclusive=True)

    def _meta_lock(self) -> contextlib.AbstractContextManager[None]:
        return self._lock("meta.lock", exclusive=True)

    def _refs(self) -> dict[str, str]:
        try:
            with open(os.path.join(self.root, "refs.json")) as f:
                refs = json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise ImageError(f"{self.root}/refs.json is corrupt: {e}") from None
        return refs if isinstance(refs, dict) else {}

    def _write_json(self, path: str, doc: Any) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
        os.replace(tmp, path)

    def _record_path(self, digest: str) -> str:
        d = Digest.parse(digest)
        return os.path.join(self.root, "images", d.algorithm, f"{d.hex}.json")

    def _record(self, digest: str) -> dict[str, Any] | None:
        try:
            with open(self._record_path(digest)) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def _records(self) -> list[dict[str, Any]]:
        out = []
        base = os.path.join(self.root, "images")
        for algorithm in ("sha256", "sha512"):
            try:
                names = sorted(os.listdir(os.path.join(base, algorithm)))
            except FileNotFoundError:
                continue
            for name in names:
                if name.endswith(".json"):
                    rec = self._record(f"{algorithm}:{name[:-5]}")
                    if rec is not None:
                        out.append(rec)
        return out

    def _build_record(self, manifest_digest: str, what: str) -> dict[str, Any]:
        """The record of an image whose blobs are all in the store."""
        data = self.blobs.read_bytes(manifest_digest, f"{what}: manifest")
        manifest = parse_document(data, f"{what}: manifest {manifest_digest}")
        if not isinstance(manifest, Manifest):
            raise ManifestError(f"{what}: {manifest_digest} is not an image manifest")
        config = parse_config(self.blobs.read_bytes(manifest.config.digest, f"{what}: config"),
                              f"{what}: config {manifest.config.digest}")
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(manifest.layers):
            raise ManifestError(f"{what}: {len(manifest.layers)} layers but the config has "
                                f"{len(diff_ids)} diff_ids")
        for layer in manifest.layers:
            if not self.blobs.has(layer.digest, layer.size):
                raise ImageError(f"{what}: layer {layer.digest} is missing from the store")
        plat = config_platform(config)
        return {
            "digest": manifest_digest,
            "id": manifest.config.digest,
            "media_type": manifest.media_type,
            "platform": str(plat) if plat else "",
            "created": config.get("created") or "",
            "size": sum(layer.size for layer in manifest.layers) + manifest.config.size + len(data),
            "layers": [{"digest": layer.digest, "size": layer.size, "media_type": layer.media_type,
                        "diff_id": diff_id} for layer, diff_id in zip(manifest.layers, diff_ids)],
            "repo_digests": [],
            "added": time.time(),
        }

    def _register(self, manifest_digest: str, names: Iterable[str], what: str,
                  repo_digest: str | None = None) -> dict[str, Any]:
        """Record an image whose blobs are stored and point `names` at it."""
        record = self._build_record(manifest_digest, what)
        if self.snapshotter.effective_mode() == OVERLAY:
            # Unpack now, not on the container start path (and refuse a hostile layer
            # before the image is recorded at all).
            for layer in self._layer_refs(record):
                self.snapshotter.ensure_layer(layer, what)
        with self._meta_lock():
            old = self._record(manifest_digest)
            if old is not None:
                record["added"] = old.get("added", record["added"])
                record["repo_digests"] = old.get("repo_digests", [])
            if repo_digest and repo_digest not in record["repo_digests"]:
                record["repo_digests"].append(repo_digest)
            self._write_json(self._record_path(manifest_digest), record)
            refs = self._refs()
            for name in names:
                refs[name] = manifest_digest
            self._write_json(os.path.join(self.root, "refs.json"), refs)
        return record

    # ------------------------------------------------------------------ lookup
    def resolve(self, ref: str) -> str:
        """The manifest digest an image is known by: a name (`busybox`,
        `host:5000/app:1`, `name@sha256:...`), a manifest digest, an image ID (its
        config digest) or a unique prefix of at least 6 hex digits of either."""
        refs = self._refs()
        candidate = ref
        if is_digest(candidate):
            if self._record(candidate) is not None:
                return candidate
            matches = [r["digest"] for r in self._records() if r.get("id") == candidate]
            if matches:
                return matches[0]
            raise ImageNotFound(f"image {ref}: no such image in the store {self.root}")
        try:
            parsed = parse_reference(ref)
        except InvalidReference:
            parsed = None
        if parsed is not None:
            if parsed.digest and self._record(parsed.digest) is not None:
                return parsed.digest
            digest = refs.get(parsed.name)
            if digest is not None and self._record(digest) is not None:
                return digest
        prefix = ref[len("sha256:"):] if ref.startswith("sha256:") else ref
        if len(prefix) >= 6 and all(c in "0123456789abcdef" for c in prefix):
            matches = {r["digest"] for r in self._records()
                       if r["digest"].split(":", 1)[1].startswith(prefix)
                       or r.get("id", ":").split(":", 1)[1].startswith(prefix)}
            if len(matches) == 1:
                return matches.pop()
            if len(matches) > 1:
                raise ImageError(f"image {ref}: the prefix matches {len(matches)} images; "
                                 "give more digits")
        shown = parsed.name if parsed is not None else ref
        raise ImageNotFound(f"image {shown}: no such image in the store {self.root} (pull or "
                            "import it first)")

    def exists(self, ref: str) -> bool:
        try:
            self.resolve(ref)
            return True
        except ImageNotFound:
            return False

    def _names_of(self, digest: str, refs: dict[str, str] | None = None) -> list[str]:
        refs = self._refs() if refs is None else refs
        return sorted(n for n, d in refs.items() if d == digest)

    def _config_doc(self, record: dict[str, Any]) -> dict[str, Any]:
        return parse_config(self.blobs.read_bytes(record["id"], "image config"),
                            f"image {record['digest']}: config {record['id']}")

    def _layer_refs(self, record: dict[str, Any]) -> list[LayerRef]:
        return [LayerRef(layer["digest"], layer["diff_id"], layer["media_type"])
                for layer in record["layers"]]

    def _get(self, ref: str) -> dict[str, Any]:
        digest = self.resolve(ref)
        record = self._record(digest)
        if record is None:
            raise ImageNotFound(f"image {ref}: no such image in the store {self.root}")
        return record

    # ------------------------------------------------------------------ the public API
    def list(self) -> list[dict[str, Any]]:
        """Every image: names, digest, id, platform, size, created."""
        refs = self._refs()
        images = [{"names": self._names_of(r["digest"], refs), "digest": r["digest"],
                   "id": r["id"], "platform": r["platform"], "size": r["size"],
                   "created": r["created"]} for r in self._records()]
        # By name; images without one (imported unnamed, or replaced by a newer pull) last.
        return sorted(images, key=lambda i: (not i["names"], i["names"][:1], i["digest"]))

    def inspect(self, ref: str) -> dict[str, Any]:
        """Everything about one image: digest (of its manifest), id (of its config),
        names, repo digests, platform, size, layers (digest, diff_id, size, media type),
        config (see `image_config`), the whole image config document, and the
        snapshots made from it."""
        record = self._get(ref)
        doc = self._config_doc(record)
        return {
            "digest": record["digest"],
            "id": record["id"],
            "names": self._names_of(record["digest"]),
            "repo_digests": list(record.get("repo_digests", [])),
            "media_type": record["media_type"],
            "platform": record["platform"],
            "created": record["created"],
            "size": record["size"],
            "layers": [dict(layer) for layer in record["layers"]],
            "config": _runtime_config(doc),
            "image_config": doc,
            "snapshots": [s["id"] for s in self.snapshotter.list()
                          if s.get("image") == record["digest"]],
        }

    def image_config(self, ref: str) -> dict[str, Any]:
        """The image's runtime config with every key present: Entrypoint, Cmd, Env
        (lists), WorkingDir, User, StopSignal (strings), ExposedPorts, Labels, Volumes
        (dicts); empty when the image does not set them."""
        return _runtime_config(self._config_doc(self._get(ref)))

    def pull(self, ref: str, policy: str | None = None, platform: str | None = None, *,
             insecure: bool = False, credentials: tuple[str, str] | None = None,
             progress: "bool | PullProgress | None" = False) -> dict[str, Any]:
        """Make `ref` present per the pull policy (None: Kubernetes' default for the
        reference: Always for `:latest` or no tag, else IfNotPresent) and return
        `inspect()` of it. `platform` is `os/arch[/variant]` (default: this host's).
        `progress`: True draws a progress line on stderr when it is a terminal."""
        parsed = parse_reference(ref)
        policy = check_pull_policy(policy or default_pull_policy(ref))
        plat = parse_platform(platform)
        if policy in (NEVER, IF_NOT_PRESENT):
            local = self._local_for(parsed.name if not parsed.digest else str(parsed), plat)
            if local is not None:
                if self._refs().get(parsed.name) != local:
                    self.tag(local, parsed.name)  # found by digest: record the name too
                return self.inspect(local)
            if policy == NEVER:
                raise ImageNotFound(f"image {parsed.name}: not in the store {self.root} and "
                                    "the pull policy is Never")
        from pyruntime.image.progress import PullProgress
        from pyruntime.image.registry import pull_image

        client = self._client(parsed.domain, insecure, credentials)
        shown = progress if isinstance(progress, PullProgress) else (
            PullProgress(f"pulling {parsed.name}") if progress else None)
        with self._content_lock():
            try:
                pulled = pull_image(client, parsed, self.blobs, plat, shown, self.workers)
            except BaseException:
                if shown:
                    shown.finish()  # end the progress line before the error is printed
                raise
            self._register(pulled.manifest_digest, [parsed.name], str(parsed),
                           repo_digest=f"{parsed.repository}@{pulled.repo_digest}")
        if shown:
            shown.finish(f"pulled {parsed.name}")
        return self.inspect(pulled.manifest_digest)

    def _local_for(self, ref: str, plat: Platform) -> str | None:
        try:
            record = self._get(ref)
        except ImageNotFound:
            return None
        if record["platform"] and not plat.matches(parse_platform(record["platform"])):
            return None  # present, but for another platform
        return record["digest"]

    def push(self, source: str, target: str | None = None, *, insecure: bool = False,
             credentials: tuple[str, str] | None = None) -> str:
        """Push image `source` from the store to the registry named by `target`
        (default: `source` itself). Returns the manifest digest."""
        from pyruntime.image.registry import push_image

        digest = self.resolve(source)
        parsed = parse_reference(target or source)
        client = self._client(parsed.domain, insecure, credentials)
        return push_image(client, parsed, self.blobs, digest)

    def _client(self, domain: str, insecure: bool,
                credentials: tuple[str, str] | None) -> "RegistryClient":
        from pyruntime.image.registry import Credentials, RegistryClient

        creds = Credentials(*credentials) if credentials else self._credentials_for(domain)
        insecure = insecure or domain in self.insecure_registries
        key = (domain, insecure)
        client = self._clients.get(key)
        if client is None or client.credentials != creds:
            client = RegistryClient(domain, insecure=insecure, credentials=creds,
                                    retries=self.retries, backoff=self.backoff)
            self._clients[key] = client
        return client

    def _credentials_for(self, domain: str) -> "Credentials | None":
        from pyruntime.image.registry import Credentials, load_auth_file

        if domain in self.credentials:
            return Credentials(*self.credentials[domain])
        path = self.auth_file or os.environ.get("REGISTRY_AUTH_FILE") or \
            os.path.join(os.path.expanduser("~"), ".docker", "config.json")
        return load_auth_file(path).get(domain)

    def import_path(self, path: str, ref: str | None = None,
                    changes: Iterable[str] | None = None, *, platform: str | None = None,
                    kind: str | None = None) -> dict[str, Any]:
        """Import an OCI layout (directory or tar), a docker-save archive or a root
        filesystem (directory or tar), telling which by looking (or `kind`). `ref`
        names the image (else the archive's own names); `changes` are Dockerfile-style
        (`CMD ["sh"]`, `ENV A=b`, `WORKDIR /x`, `USER 1000`, `ENTRYPOINT ...`). Returns
        `inspect()` of the (first) imported image."""
        from pyruntime.image.importer import Importer

        importer = Importer(self.blobs, parse_platform(platform))
        self._ensure_root()
        with self._content_lock():
            imported = importer.import_path(path, ref, changes, kind)
            for image in imported:
                self._register(image.manifest_digest, image.names, path)
        return self.inspect(imported[0].manifest_digest)

    def tag(self, ref: str, name: str) -> str:
        """Give the image `ref` another name; returns the normalised name."""
        digest = self.resolve(ref)
        normalized = parse_reference(name).name
        with self._meta_lock():
            refs = self._refs()
            refs[normalized] = digest
            self._write_json(os.path.join(self.root, "refs.json"), refs)
        return normalized

    def remove(self, ref: str) -> list[str]:
        """Remove a name; the image goes with its last name (or at once when `ref` is
        a digest or ID). Refused (ImageInUse) while a snapshot uses the image. Blobs
        and unpacked layers stay until `prune`. Returns the names removed."""
        with self._gc_lock():
            digest = self.resolve(ref)
            with self._meta_lock():
                refs = self._refs()
                names = self._names_of(digest, refs)
                try:
                    name = parse_reference(ref).name
                except InvalidReference:
                    name = None
                by_name = name in names and not is_digest(ref)
                dropping = [name] if by_name else names
                remaining = [n for n in names if n not in dropping]
                if not remaining:
                    users = [s["id"] for s in self.snapshotter.list() if s.get("image") == digest]
                    if users:
                        raise ImageInUse(f"image {ref} ({digest}) is in use by snapshot(s) "
                                         f"{', '.join(users)}: remove those containers first")
                for n in dropping:
                    refs.pop(n, None)
                self._write_json(os.path.join(self.root, "refs.json"), refs)
                if not remaining:
                    os.unlink(self._record_path(digest))
        return dropping or [digest]

    def prune(self) -> dict[str, int]:
        """Delete what no image needs: images without a name that no snapshot uses,
        then blobs and unpacked layers no remaining image references, and leftover
        downloads. Returns counts and the bytes freed."""
        freed = {"images": 0, "blobs": 0, "layers": 0, "bytes": 0}
        with self._gc_lock(), self._meta_lock():
            refs = self._refs()
            named = set(refs.values())
            in_use = {s.get("image") for s in self.snapshotter.list()}
            keep_blobs: set[str] = set()
            keep_layers: set[str] = set()
            for record in self._records():
                if record["digest"] not in named and record["digest"] not in in_use:
                    os.unlink(self._record_path(record["digest"]))
                    freed["images"] += 1
                    continue
                keep_blobs.update([record["digest"], record["id"]])
                keep_blobs.update(layer["digest"] for layer in record["layers"])
                keep_layers.update(layer["diff_id"] for layer in record["layers"])
            for digest in list(self.blobs.digests()):
                if digest not in keep_blobs:
                    try:
                        freed["bytes"] += self.blobs.size(digest)
                    except OSError:
                        pass
                    self.blobs.delete(digest)
                    freed["blobs"] += 1
            for diff_id in self.snapshotter.layer_dirs():
                if diff_id not in keep_layers:
                    freed["bytes"] += self.snapshotter.remove_layer(diff_id)
                    freed["layers"] += 1
            self.snapshotter.clean_temp()
            shutil.rmtree(self.blobs.ingest_dir, ignore_errors=True)
            # Names pointing at records that are gone (a crash between two writes).
            stale = [n for n, d in refs.items() if self._record(d) is None]
            if stale:
                for n in stale:
                    refs.pop(n)
                self._write_json(os.path.join(self.root, "refs.json"), refs)
        return freed

    # ------------------------------------------------------------------ snapshots, bundles
    def create_snapshot(self, ref: str, snapshot_id: str, target: str | None = None) -> str:
        """A writable root filesystem for a container, made from image `ref`: an
        overlay mount of its shared layers (or a copy) at `target`, default
        `<store>/snapshots/<id>/rootfs`. Returns the root's path."""
        check_snapshot_id(snapshot_id)
        with self._content_lock():
            record = self._get(ref)
            return self.snapshotter.create(snapshot_id, record["digest"], self._layer_refs(record),
                                           f"image {ref}", target)

    def remove_snapshot(self, snapshot_id: str) -> bool:
        """Unmount and delete a snapshot (idempotent: False when there was none)."""
        return self.snapshotter.remove(snapshot_id)

    def snapshots(self) -> list[dict[str, Any]]:
        return self.snapshotter.list()

    def make_bundle(self, ref: str, directory: str, snapshot_id: str | None = None, *,
                    hostname: str = "pyruntime", args: list[str] | None = None) -> str:
        """An OCI bundle at `directory`: `rootfs` (a snapshot of the image, id
        `snapshot_id`, default derived from the directory's path) and `config.json`
        from the image config (see `pyruntime.image.bundle`). Returns the directory;
        `remove_bundle(directory)` undoes it."""
        directory = os.path.abspath(directory)
        os.makedirs(directory, exist_ok=True)
        if os.path.lexists(os.path.join(directory, "config.json")):
            raise ImageError(f"{directory}: already has a config.json (remove the bundle first)")
        sid = snapshot_id or bundle_snapshot_id(directory)
        record = self._get(ref)
        doc = self._config_doc(record)
        rootfs = self.create_snapshot(record["digest"], sid, os.path.join(directory, "rootfs"))
        try:
            spec = bundle_spec(doc, rootfs, hostname=hostname, args=args,
                               annotations={"org.opencontainers.image.ref.name": _display(ref)})
            write_spec(directory, spec)
        except BaseException:
            self.remove_snapshot(sid)
            raise
        return directory

    def remove_bundle(self, directory: str) -> bool:
        """Undo `make_bundle`: remove the snapshot whose root is `directory/rootfs`,
        and config.json. False when no snapshot had its root there."""
        directory = os.path.abspath(directory)
        rootfs = os.path.join(directory, "rootfs")
        found = False
        for snap in self.snapshotter.list():
            if snap.get("rootfs") == rootfs:
                self.remove_snapshot(snap["id"])
                found = True
        if found:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, "config.json"))
            with contextlib.suppress(OSError):
                os.rmdir(directory)  # only if nothing else is in it
        return found


def bundle_snapshot_id(directory: str) -> str:
    """The snapshot id a bundle at `directory` gets by default."""
    return "bundle-" + hashlib.sha256(os.path.abspath(directory).encode()).hexdigest()[:16]


def _display(ref: str) -> str:
    try:
        return str(parse_reference(ref))
    except InvalidReference:
        return ref


def _runtime_config(doc: dict[str, Any]) -> dict[str, Any]:
    section = doc.get("config") or {}
    out = {}
    for key, empty in CONFIG_KEYS.items():
        value = section.get(key)
        out[key] = value if value is not None else (type(empty)())
    return out


__all__ = ["ImageStore", "DEFAULT_ROOT", "STORE_ENV", "default_root", "bundle_snapshot_id",
           "ALWAYS", "IF_NOT_PRESENT", "NEVER", "COPY", "OVERLAY", "AUTO", "SnapshotError"]
