"""Reading, writing and checking package directories, and model repositories of them.

A package is written into a temporary sibling directory and renamed into place only when
complete, so a failed export or a full disk never leaves a half-written package behind.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from pydantic import ValidationError

from bushu.errors import IntegrityError, NotFound, PackageError
from bushu.package.manifest import MANIFEST_NAME, Manifest, canonical_digest

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Parse and validate `bushu.json`, checking the manifest's own digest."""
    root = Path(directory)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise NotFound(f"{root}: no such package directory")
    if not path.is_file():
        raise NotFound(f"{root}: not a bushu package ({MANIFEST_NAME} is missing)")
    try:
        body = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise IntegrityError(f"{path}: not valid JSON ({exc})", files=[MANIFEST_NAME]) from None
    if not isinstance(body, dict):
        raise IntegrityError(f"{path}: expected a JSON object", files=[MANIFEST_NAME])
    stated = body.pop("digest", None)
    # The digest covers the manifest as written, so fields added by later versions of bushu
    # (with defaults) do not invalidate packages written before them.
    if stated != canonical_digest(body):
        raise IntegrityError(
            f"{path}: the manifest was modified after it was written (digest mismatch)",
            files=[MANIFEST_NAME],
        )
    try:
        manifest = Manifest.model_validate(body)
    except ValidationError as exc:
        raise IntegrityError(f"{path}: invalid manifest:\n{exc}", files=[MANIFEST_NAME]) from None
    return manifest


def check_inside(root: Path, rel: str) -> Path:
    """`root / rel`, refused when it resolves outside the package folder (a link out of it)."""
    path = root / rel
    if not path.resolve().is_relative_to(root.resolve()):
        raise PackageError(f"{root}: {rel} resolves outside the package folder; refusing to read it")
    return path


def verify_files(root: Path, manifest: Manifest, skip: Collection[str] = ()) -> None:
    """Re-hash every listed file but those in `skip`; raise `IntegrityError` naming each that changed."""
    problems: list[str] = []
    bad: list[str] = []
    for rel, expected in sorted(manifest.files.items()):
        if rel in skip:
            continue
        path = check_inside(root, rel)
        if not path.is_file():
            problems.append(f"{rel}: missing")
            bad.append(rel)
        elif sha256_file(path) != expected:
            problems.append(f"{rel}: contents changed (SHA-256 mismatch)")
            bad.append(rel)
    if problems:
        raise IntegrityError(f"{root}: verification failed:\n  " + "\n  ".join(problems), files=bad)


def verify_package(directory: str | os.PathLike[str]) -> Manifest:
    """Re-hash every listed file; raise `IntegrityError` naming each one that changed."""
    root = Path(directory)
    manifest = read_manifest(root)
    verify_files(root, manifest)
    return manifest


def hash_files(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root` except the manifest, keyed by relative POSIX path."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }


@contextmanager
def staged_package(out: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces `out` whole, on error it vanishes.

    The caller writes the package's files into the staging directory and finally calls
    `write_manifest` there. `out` must not exist (or be empty) unless `force` is set.
    """
    target = Path(out)
    if target.exists() and not force:
        if not target.is_dir() or any(target.iterdir()):
            raise PackageError(f"{target} already exists and is not empty; pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    # named before it exists, so a SIGTERM (SystemExit) landing just as it is made still finds it
    staging = target.parent / f".{target.name}.{secrets.token_hex(6)}"
    try:
        staging.mkdir(mode=0o700)
        yield staging
        if not (staging / MANIFEST_NAME).is_file():
            raise PackageError("internal: a package was staged without a manifest")
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        staging.rename(target)
    except BaseException:
        _remove(staging)
        raise


def _remove(folder: Path) -> None:
    """Remove a folder even while a native library's thread is still closing files in it."""
    for _ in range(5):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.1)


def write_manifest(directory: Path, manifest: Manifest) -> Manifest:
    """Write `bushu.json`; the manifest's `files` must already hash what `directory` holds."""
    (directory / MANIFEST_NAME).write_bytes(manifest.to_json())
    return manifest


def is_package(directory: Path) -> bool:
    return (directory / MANIFEST_NAME).is_file()


def scan_repository(root: str | os.PathLike[str]) -> dict[tuple[str, str], Path]:
    """Find the packages of a model repository laid out as `<name>/<version>/bushu.json`.

    A path that is itself a package counts as a repository of one.
    """
    base = Path(root)
    if not base.is_dir():
        raise NotFound(f"{base}: no such directory")
    if is_package(base):
        manifest = read_manifest(base)
        return {(manifest.name, manifest.version): base}
    found: dict[tuple[str, str], Path] = {}
    for name_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for version_dir in sorted(p for p in name_dir.iterdir() if p.is_dir()):
            if is_package(version_dir):
                found[(name_dir.name, version_dir.name)] = version_dir
    return found
