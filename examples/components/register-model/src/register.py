"""Register a model folder as <registry>/<name>/<version>/ and point <registry>/<name>/latest at it."""
import argparse
import hashlib
import pathlib
import sys

from parallelrun.runner.storage import filesystem, write_atomic


def digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=pathlib.Path, required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    args = parser.parse_args()
    files = {p.relative_to(args.model).as_posix(): p.read_bytes() for p in sorted(args.model.rglob("*")) if p.is_file()}
    if not files:
        print(f"register: {args.model} holds no files; nothing to register", file=sys.stderr)
        return 1
    fs, root = filesystem(args.registry)
    target = f"{root}/{args.name}/{args.version}"
    stamp = f"{target}/.digest"
    if fs.exists(stamp):
        if fs.cat_file(stamp).decode() != digest(files):
            print(f"register: {args.name} version {args.version} exists with another model; versions are immutable, "
                  f"register a new one (e.g. --set parameters.modelVersion=...)", file=sys.stderr)
            return 1
        print(f"{args.name} version {args.version} is registered already, with these files")
    else:
        for name, data in files.items():
            write_atomic(fs, f"{target}/{name}", data)
        write_atomic(fs, stamp, digest(files).encode())  # last: the version is complete
        print(f"registered {args.name} version {args.version}: {len(files)} file(s) in {args.registry.rstrip('/')}/"
              f"{args.name}/{args.version}/")
    write_atomic(fs, f"{root}/{args.name}/latest", args.version.encode())
    print(f"{args.name}/latest -> {args.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
