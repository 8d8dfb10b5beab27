"""Encryption at rest: AES-256-GCM per file, decrypted in memory only.

Each encrypted file is `nonce (12 bytes) ‖ ciphertext ‖ tag`, with a fresh random nonce and the
file's path in the package as associated data, so files cannot be swapped for one another. The
manifest hashes the encrypted bytes (a package verifies without the key) and names the key by an
id derived from it; the key itself comes from a key file or an environment variable, never
from the package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
from pathlib import Path

from bushu.errors import BushuError, InvalidInput, NotFound
from bushu.package.manifest import Encryption, Manifest
from bushu.package.store import hash_files, staged_package, verify_package, write_manifest

KEY_ENV = "BUSHU_KEY"
NONCE_BYTES = 12
#: Model and weight files: what holds the model's knowledge.
ENCRYPTED_SUFFIXES = (".onnx", ".safetensors", ".bin", ".xml", ".pt2", ".data")


class DecryptionKeyError(BushuError):
    """A missing or wrong decryption key."""

    status = 403


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"bushu-key-id:" + key).hexdigest()[:16]


def generate_key(path: Path) -> str:
    """Write a fresh 256-bit key, base64, mode 0600; return its id."""
    if path.exists():
        raise InvalidInput(f"{path} already exists; refusing to overwrite a key")
    key = os.urandom(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(key) + b"\n")
    return key_id(key)


def _parse_key(text: bytes, where: str) -> bytes:
    stripped = text.strip()
    for decode in (base64.b64decode, binascii.unhexlify):
        try:
            key = decode(stripped)
        except (binascii.Error, ValueError):
            continue
        if len(key) == 32:
            return key
    if len(text) == 32:
        return text
    raise InvalidInput(f"{where}: not a 256-bit key (expected 32 bytes as base64, hex or raw)")


def load_key(key_file: Path | None = None) -> bytes | None:
    """The key from `key_file`, else from $BUSHU_KEY, else None."""
    if key_file is not None:
        if not key_file.is_file():
            raise NotFound(f"key file {key_file} does not exist")
        return _parse_key(key_file.read_bytes(), str(key_file))
    value = os.environ.get(KEY_ENV)
    return _parse_key(value.encode(), f"${KEY_ENV}") if value else None


def _aead(key: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def encrypt_package(source: Path, out: Path, key: bytes, *, force: bool = False) -> Manifest:
    """Copy a package, encrypting its model and weight files; the source is left as it was."""
    manifest = verify_package(source)
    if manifest.encryption is not None:
        raise InvalidInput(f"{source} is already encrypted (key id {manifest.encryption.key_id})")
    targets = sorted(f for f in manifest.files if f.endswith(ENCRYPTED_SUFFIXES))
    if not targets:
        raise InvalidInput(f"{source} has no model or weight files to encrypt")
    aead = _aead(key)
    with staged_package(out, force=force) as staging:
        for rel in manifest.files:
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if rel in targets:
                nonce = os.urandom(NONCE_BYTES)
                dest.write_bytes(nonce + aead.encrypt(nonce, (source / rel).read_bytes(), rel.encode()))
            else:
                shutil.copyfile(source / rel, dest)
        encrypted = manifest.model_copy(update={
            "encryption": Encryption(key_id=key_id(key), files=targets),
            "files": hash_files(staging),
        })
        return write_manifest(staging, Manifest.model_validate(encrypted.model_dump()))


def decrypt(manifest: Manifest, rel: str, data: bytes, key: bytes | None) -> bytes:
    """Package file `rel`'s plaintext from its bytes `data` as stored (unchanged if not encrypted)."""
    if manifest.encryption is None or rel not in manifest.encryption.files:
        return data
    wanted = manifest.encryption.key_id
    if key is None:
        raise DecryptionKeyError(
            f"{manifest.name} is encrypted with key id {wanted}; pass its key (--decrypt-key FILE or ${KEY_ENV})"
        )
    if key_id(key) != wanted:
        raise DecryptionKeyError(f"{manifest.name} is encrypted with key id {wanted}, not with the given key ({key_id(key)})")
    from cryptography.exceptions import InvalidTag

    try:
        return _aead(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], rel.encode())
    except InvalidTag:
        raise DecryptionKeyError(f"{rel}: decryption failed; the file was altered or encrypted for another path") from None
