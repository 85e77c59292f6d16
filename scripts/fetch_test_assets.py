"""Fetch the public vocabulary files that the PRM-format tests build their tokenizers from,
once, at install time (``make test-assets``, part of ``make install-test``), so that a test run
opens no network connection.

The published PRMs cannot be downloaded, but their tokenizers can be rebuilt from files in
packages on PyPI:

* the Qwen2 and Llama 3 vocabularies ship as vocab-only GGUF files in llama-cpp-python's
  source archive (``vendor/llama.cpp/models``);
* Mistral's SentencePiece model (Math-Shepherd's tokenizer) ships in the ``mistral_common``
  wheel.

Both archives are pinned, and each extracted file must match its SHA-256 below: a file that
does not is deleted and reported, never used. The files land in ``$TTSCALE_TEST_ASSETS``
or, by default, ``<the venv>/ttscale-test-assets`` (``make clean`` removes them with it).

Usage: ``python scripts/fetch_test_assets.py [--check]``."""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

LLAMA_CPP_SDIST = "llama-cpp-python==0.3.36"
MISTRAL_COMMON = "mistral_common==1.12.0"

# file name under raw/ -> (archive requirement, member path suffix, sha256)
ASSETS = {
    "ggml-vocab-qwen2.gguf": (
        LLAMA_CPP_SDIST, "/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf",
        "44c2f46b715f585c6ab513970e8a006bfa5badd6108560054921cf598d154d8c"),
    "ggml-vocab-llama-bpe.gguf": (
        LLAMA_CPP_SDIST, "/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf",
        "97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e"),
    # apart: a tokenizer.model beside a GGUF would be picked up in its place
    "mistral/tokenizer.model": (
        MISTRAL_COMMON, "mistral_common/data/tokenizer.model.v1",
        "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"),
}


def assets_dir() -> Path:
    """Where the fetched files live: ``$TTSCALE_TEST_ASSETS`` or ``<venv>/ttscale-test-assets``."""
    return Path(os.environ.get("TTSCALE_TEST_ASSETS",
                               Path(sys.prefix) / "ttscale-test-assets"))


def raw_path(name: str) -> Path:
    return assets_dir() / "raw" / name


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _problem(name: str) -> str | None:
    """Why the asset ``name`` cannot be used (absent, or another checksum), or None."""
    path, expected = raw_path(name), ASSETS[name][2]
    if not path.exists():
        return f"{path} is missing"
    found = sha256(path)
    return None if found == expected else f"{path} has SHA-256 {found}, expected {expected}"


def missing_or_wrong() -> list[str]:
    """The assets that are absent or whose checksum does not match, with the reason."""
    return [problem for problem in map(_problem, ASSETS) if problem is not None]


def _download(requirement: str, target: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d",
               str(target), requirement]
    if requirement == LLAMA_CPP_SDIST:
        command[4:4] = ["--no-binary", ":all:"]
    subprocess.run(command, check=True, timeout=1800)
    found = sorted(target.iterdir())
    if not found:
        raise RuntimeError(f"pip download {requirement} left nothing in {target}")
    return found[0]


def _members(archive: Path, suffixes: dict[str, str]) -> dict[str, bytes]:
    """The bytes of the archive members whose path ends with each suffix."""
    found: dict[str, bytes] = {}
    if archive.name.endswith(".whl") or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                for name, suffix in suffixes.items():
                    if member.endswith(suffix):
                        found[name] = zipped.read(member)
    else:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                for name, suffix in suffixes.items():
                    if member.name.endswith(suffix):
                        data = tar.extractfile(member)
                        assert data is not None
                        found[name] = data.read()
    return found


def fetch() -> None:
    by_archive: dict[str, dict[str, str]] = {}
    for name, (requirement, suffix, _) in ASSETS.items():
        if not raw_path(name).exists():
            by_archive.setdefault(requirement, {})[name] = suffix
    for requirement, suffixes in by_archive.items():
        with tempfile.TemporaryDirectory() as scratch:
            archive = _download(requirement, Path(scratch))
            found = _members(archive, suffixes)
        for name in suffixes:
            if name not in found:
                raise RuntimeError(f"{requirement} no longer holds {suffixes[name]}")
            path = raw_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(found[name])
    problems = []
    for name in ASSETS:
        problem = _problem(name)
        if problem is not None:  # a file that fails its checksum is never left for the tests
            raw_path(name).unlink(missing_ok=True)
            problems.append(problem)
    if problems:
        raise SystemExit("test assets failed their checks:\n  " + "\n  ".join(problems))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only verify the files already fetched (no network)")
    args = parser.parse_args()
    if args.check:
        problems = missing_or_wrong()
        if problems:
            raise SystemExit("\n".join(problems))
    else:
        fetch()
    print(f"test assets ready in {assets_dir() / 'raw'}")


if __name__ == "__main__":
    main()
