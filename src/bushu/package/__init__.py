"""The package: a directory with a typed manifest and the hashed files it lists."""

from bushu.package.manifest import MANIFEST_NAME, Manifest, Provenance, Step, TensorSpec, Variant
from bushu.package.store import (
    hash_files,
    read_manifest,
    scan_repository,
    sha256_file,
    staged_package,
    verify_package,
    write_manifest,
)

__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "Provenance",
    "Step",
    "TensorSpec",
    "Variant",
    "hash_files",
    "read_manifest",
    "scan_repository",
    "sha256_file",
    "staged_package",
    "verify_package",
    "write_manifest",
]
