"""A package's files as the runtime gets them: each read once, checked against the manifest's
hash, and decrypted in memory, so the bytes that run are the bytes that were hashed.

Hashing a file and then opening it again to load it leaves a gap in which the file (or a link
on its path) can be swapped; handing on the very bytes that were hashed closes it. Only files
the manifest lists, by a path that stays inside the package folder, can be read at all.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bushu.errors import IntegrityError, PackageError
from bushu.package.encryption import decrypt
from bushu.package.manifest import Manifest
from bushu.package.store import check_inside, verify_files


class PackageFiles:
    """Reads a package's listed files for one load; `read` is a `runtime.base.FileReader`."""

    def __init__(self, root: str | Path, manifest: Manifest, key: bytes | None = None) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.key = key
        self._read: dict[str, bytes] = {}

    def read(self, rel: str) -> bytes:
        """The plaintext of listed file `rel`, from bytes whose SHA-256 matched the manifest."""
        if rel in self._read:
            return self._read[rel]
        expected = self.manifest.files.get(rel)
        if expected is None:
            raise PackageError(f"{self.manifest.name}: {rel!r} is not a file listed in the package; refusing to read it")
        path = check_inside(self.root, rel)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IntegrityError(f"{self.root}: {rel}: cannot be read ({exc.strerror})", files=[rel]) from None
        if hashlib.sha256(data).hexdigest() != expected:
            raise IntegrityError(f"{self.root}: verification failed:\n  {rel}: contents changed (SHA-256 mismatch)",
                                 files=[rel])
        self._read[rel] = plain = decrypt(self.manifest, rel, data, self.key)
        return plain

    def verify_unread(self) -> None:
        """Re-hash every listed file not read yet; raise `IntegrityError` naming each that changed."""
        verify_files(self.root, self.manifest, skip=self._read)

    def release(self) -> None:
        """Drop the bytes kept for further loads (the runtime holds its own copy by now)."""
        self._read.clear()
