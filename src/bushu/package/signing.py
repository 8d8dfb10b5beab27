"""Package signatures in the OpenSSF model-signing format (PyPI `model-signing`).

Chosen over a hand-rolled ed25519 scheme because it is the emerging standard for ML artefacts:
a Sigstore bundle (`model.sig`) over an in-toto statement listing every file's SHA-256, signed
offline with an EC P-256 key, verifiable by other tools. Since `bushu.json` is one of the signed
files and it lists every file by hash, one flipped byte anywhere fails verification.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from bushu.errors import BushuError, IntegrityError, InvalidInput, NotFound
from bushu.package.manifest import Manifest
from bushu.package.store import verify_package

SIGNATURE_NAME = "model.sig"


class SignatureError(IntegrityError):
    """A signature that is missing, invalid, or does not cover the package as it is."""

    status = 403


def generate_keypair(private_path: Path) -> Path:
    """Write an EC P-256 private key (PEM, mode 0600) and its public key beside it (`.pub`)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if private_path.exists():
        raise InvalidInput(f"{private_path} already exists; refusing to overwrite a key")
    key = ec.generate_private_key(ec.SECP256R1())
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    public_path = private_path.with_name(private_path.name + ".pub")
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return public_path


def _hashing():
    from model_signing import hashing

    return hashing.Config().set_ignored_paths(paths=[SIGNATURE_NAME])


def sign_package(directory: Path, private_key: Path) -> Path:
    """Check the package's integrity, then sign it; `model.sig` appears whole or not at all."""
    from model_signing import signing

    verify_package(directory)
    if not private_key.is_file():
        raise NotFound(f"private key {private_key} does not exist")
    target = directory / SIGNATURE_NAME
    with tempfile.TemporaryDirectory(prefix="bushu-sign-") as tmp:
        signed = Path(tmp) / SIGNATURE_NAME
        try:
            signer = signing.Config().use_elliptic_key_signer(private_key=private_key)
        except ValueError as exc:
            raise InvalidInput(f"{private_key}: not a usable EC P-256 private key ({exc})") from None
        signer.set_hashing_config(_hashing()).sign(directory, signed)
        staged = directory / f".{SIGNATURE_NAME}.partial"
        staged.write_bytes(signed.read_bytes())
    os.replace(staged, target)
    return target


def _changed_files(message: str) -> list[str]:
    files = re.findall(r"mismatch for \\?'([^'\\]+)\\?'", message)
    for group in re.findall(r"(?:Extra|Missing) files found in model '[^']*': (.*?)(?:'|\"|\]|$)", message):
        files.extend(f.strip() for f in group.split(",") if f.strip())
    return files


def verify_signature(directory: Path, public_key: Path) -> None:
    """Raise `SignatureError` naming what is wrong unless `public_key` signed this exact package."""
    from model_signing import verifying

    if not public_key.is_file():
        raise NotFound(f"public key {public_key} does not exist")
    signature = directory / SIGNATURE_NAME
    if not signature.is_file():
        raise SignatureError(f"{directory}: not signed ({SIGNATURE_NAME} is missing)", files=[SIGNATURE_NAME])
    try:
        config = verifying.Config().use_elliptic_key_verifier(public_key=public_key)
    except ValueError as exc:
        raise InvalidInput(f"{public_key}: not a usable EC P-256 public key ({exc})") from None
    try:
        config.set_hashing_config(_hashing()).verify(directory, signature)
    except Exception as exc:  # model-signing raises ValueError for a mismatch, many types for a bad bundle
        message = str(exc)
        if isinstance(exc, ValueError) and message.startswith("Signature mismatch"):
            files = _changed_files(message)
            detail = f"changed: {', '.join(files)}" if files else message.splitlines()[0]
            raise SignatureError(f"{directory}: signature does not match the package ({detail})", files=files) from None
        raise SignatureError(
            f"{directory}: {SIGNATURE_NAME} is not a valid signature by {public_key.name} ({type(exc).__name__})",
            files=[SIGNATURE_NAME],
        ) from None


def verify_signed_package(directory: Path, public_key: Path) -> Manifest:
    """The signature first (it covers the manifest), then every file's hash."""
    verify_signature(directory, public_key)
    try:
        return verify_package(directory)
    except BushuError as exc:
        raise SignatureError(str(exc), files=getattr(exc, "files", [])) from None
