"""`pyruntime image ...`: the image store's commands (argparse; not a hot path).

    pyruntime image [--store DIR] COMMAND ...
      pull REF [--platform P] [--policy Always|IfNotPresent|Never] [--insecure] [--creds U:P]
      push REF [TARGET] [--insecure] [--creds U:P]
      import PATH [REF] [--change "CMD ..."]... [--platform P] [--kind KIND]
      ls [--format table|json] | inspect REF | config REF | rm REF... | prune | tag REF NAME
      bundle REF DIR [--id ID] [--hostname H] | unbundle DIR
      snapshot REF ID | snapshot-rm ID | snapshots [--format table|json]

`--store` (default $PYRUNTIME_STORE, else /var/lib/pyruntime/images) is accepted before
or after the command. Exit codes: 0 ok, 1 an image error (message on stderr), 2 a usage
error, 255 an internal failure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 255


def _parser() -> argparse.ArgumentParser:
    store_opts = argparse.ArgumentParser(add_help=False)
    store_opts.add_argument("--store", default=argparse.SUPPRESS,
                            help="image store directory (default: $PYRUNTIME_STORE or "
                                 "/var/lib/pyruntime/images)")
    p = argparse.ArgumentParser(prog="pyruntime image", parents=[store_opts],
                                description="Manage the image store.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[store_opts], description=help)

    c = cmd("pull", "pull an image from a registry")
    c.add_argument("ref")
    c.add_argument("--platform", help="OS/ARCH[/VARIANT], e.g. linux/arm64 (default: this host's)")
    c.add_argument("--policy", choices=["Always", "IfNotPresent", "Never"],
                   help="pull policy (default: Always, as `docker pull`)")
    c.add_argument("--insecure", action="store_true",
                   help="allow plain HTTP and unverified TLS for this registry")
    c.add_argument("--creds", help="USER:PASSWORD for the registry")
    c.add_argument("--quiet", "-q", action="store_true", help="no progress display")

    c = cmd("push", "push an image from the store to a registry")
    c.add_argument("ref")
    c.add_argument("target", nargs="?", help="the name to push as (default: REF)")
    c.add_argument("--insecure", action="store_true")
    c.add_argument("--creds", help="USER:PASSWORD for the registry")

    c = cmd("import", "import an OCI layout, docker-save archive or root filesystem "
                      "(directory or tar)")
    c.add_argument("path")
    c.add_argument("ref", nargs="?", help="name for the image (default: the archive's own)")
    c.add_argument("--change", "-c", action="append", default=[],
                   help="Dockerfile instruction to apply: CMD, ENTRYPOINT, ENV, WORKDIR, "
                        "USER, EXPOSE, LABEL, VOLUME, STOPSIGNAL (repeatable)")
    c.add_argument("--platform", help="platform to import from a multi-platform archive")
    c.add_argument("--kind", choices=["oci-layout", "oci-archive", "docker-archive",
                                      "rootfs-dir", "rootfs-tar"],
                   help="what PATH is (default: detected)")

    c = cmd("ls", "list images")
    c.add_argument("--format", choices=["table", "json"], default="table")
    c.add_argument("--quiet", "-q", action="store_true", help="digests only")

    cmd("inspect", "show an image as JSON").add_argument("ref")
    cmd("config", "show an image's runtime config as JSON").add_argument("ref")

    c = cmd("rm", "remove images (refused while a container uses one)")
    c.add_argument("refs", nargs="+", metavar="ref")

    cmd("prune", "delete unused images, blobs and unpacked layers")

    c = cmd("tag", "give an image another name")
    c.add_argument("ref")
    c.add_argument("name")

    c = cmd("bundle", "make an OCI bundle (rootfs snapshot + config.json) from an image")
    c.add_argument("ref")
    c.add_argument("dir")
    c.add_argument("--id", help="snapshot id (default: derived from DIR)")
    c.add_argument("--hostname", default="pyruntime")

    cmd("unbundle", "remove a bundle made by 'image bundle'").add_argument("dir")

    c = cmd("snapshot", "make a writable root filesystem from an image; prints its path")
    c.add_argument("ref")
    c.add_argument("id")

    cmd("snapshot-rm", "unmount and delete a snapshot").add_argument("id")

    c = cmd("snapshots", "list snapshots")
    c.add_argument("--format", choices=["table", "json"], default="table")
    return p


def _creds(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user:
        raise _Usage("--creds must be USER:PASSWORD")
    return user, password


class _Usage(Exception):
    pass


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True))


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _size(n: int) -> str:
    from pyruntime.image.progress import human

    return human(n)


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _run(args: argparse.Namespace) -> int:
    from pyruntime.image import ImageStore

    store = ImageStore(getattr(args, "store", None))
    c = args.command
    if c == "pull":
        policy = args.policy or "Always"
        info = store.pull(args.ref, policy=policy, platform=args.platform,
                          insecure=args.insecure, credentials=_creds(args.creds),
                          progress=not args.quiet)
        print(info["digest"])
    elif c == "push":
        print(store.push(args.ref, args.target, insecure=args.insecure,
                         credentials=_creds(args.creds)))
    elif c == "import":
        info = store.import_path(args.path, args.ref, args.change, platform=args.platform,
                                 kind=args.kind)
        print(info["digest"])
    elif c == "ls":
        images = store.list()
        if args.format == "json":
            _print_json(images)
        elif args.quiet:
            for image in images:
                print(image["digest"])
        else:
            rows = [["NAME", "DIGEST", "ID", "PLATFORM", "SIZE", "CREATED"]]
            for image in images:
                for name in image["names"] or ["<none>"]:
                    rows.append([name, _short(image["digest"]), _short(image["id"]),
                                 image["platform"], _size(image["size"]), image["created"]])
            _table(rows)
    elif c == "inspect":
        _print_json(store.inspect(args.ref))
    elif c == "config":
        _print_json(store.image_config(args.ref))
    elif c == "rm":
        for ref in args.refs:
            for name in store.remove(ref):
                print(f"removed {name}")
    elif c == "prune":
        freed = store.prune()
        print(f"removed {freed['images']} images, {freed['blobs']} blobs, "
              f"{freed['layers']} unpacked layers: {_size(freed['bytes'])} freed")
    elif c == "tag":
        print(store.tag(args.ref, args.name))
    elif c == "bundle":
        print(store.make_bundle(args.ref, args.dir, args.id, hostname=args.hostname))
    elif c == "unbundle":
        if not store.remove_bundle(args.dir):
            from pyruntime.image.errors import SnapshotError

            raise SnapshotError(f"{os.path.abspath(args.dir)}: no bundle made by the store "
                                f"{store.root} is there")
    elif c == "snapshot":
        print(store.create_snapshot(args.ref, args.id))
    elif c == "snapshot-rm":
        if not store.remove_snapshot(args.id):
            from pyruntime.image.errors import SnapshotError

            raise SnapshotError(f"no snapshot {args.id} in the store {store.root}")
    elif c == "snapshots":
        snaps = store.snapshots()
        if args.format == "json":
            _print_json(snaps)
        else:
            rows = [["ID", "IMAGE", "MODE", "ROOTFS", "CREATED"]]
            for s in snaps:
                rows.append([s["id"], _short(s["image"]), s["mode"], s["rootfs"],
                             time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(s["created"]))])
            _table(rows)
    return 0


def image_main(argv: list[str]) -> int:
    """Run `pyruntime image ARGV...`; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    from pyruntime.image.errors import ImageError

    try:
        return _run(args)
    except _Usage as e:
        print(f"pyruntime image: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ImageError as e:
        print(f"pyruntime image {args.command}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("pyruntime image: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - an internal failure: say what, exit 255
        print(f"pyruntime image {args.command}: internal error: {type(e).__name__}: {e}",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(image_main(sys.argv[1:]))
