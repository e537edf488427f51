"""MODEL_URI: the weights fetched once at start-up, before any worker loads them (so before
readiness), into MODEL_CACHE_DIR; the server then serves the local copy.

    file:///models/model.pt                          a local path, not copied
    https://host/weights.safetensors#sha256=<hex>    downloaded and checked: the pin is required,
                                                     and a copy with that hash is reused
    s3://bucket/model.pt, gs://bucket/model.pt       through fsspec (torch's own dependency),
                                                     with s3fs or gcsfs added to the project;
                                                     a #sha256= pin is checked

Every failure is a CheckpointError: one line naming the URI.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from .checkpoint import CheckpointError, first_line

CHUNK = 1 << 20
REMOTE = ("s3", "gs")


def fetch(uri: str, cache_dir: Path) -> Path:
    """The local file MODEL_URI names, downloaded into `cache_dir` when it is remote."""
    parts = urllib.parse.urlsplit(uri)
    pin = pinned_sha256(uri, parts.fragment)
    if parts.scheme == "file":
        return Path(urllib.parse.unquote(parts.path))
    if parts.scheme not in ("http", "https", *REMOTE):
        raise CheckpointError(
            f"MODEL_URI={uri!r}: use file://, http(s):// (with #sha256=), s3:// or gs://"
        )
    if parts.scheme in ("http", "https") and pin is None:
        raise CheckpointError(
            f"MODEL_URI={uri!r}: an http(s) URI needs the file's hash: append #sha256=<hex>"
        )
    name = Path(urllib.parse.unquote(parts.path)).name or "model.pt"
    target = cache_dir / (f"{pin}-{name}" if pin else name)
    if pin and target.is_file() and sha256_of(target) == pin:
        return target  # fetched before: the hash says it is the same file
    return download(uri, parts._replace(fragment="").geturl(), target, pin)


def pinned_sha256(uri: str, fragment: str) -> str | None:
    if not fragment:
        return None
    key, _, value = fragment.partition("=")
    value = value.lower()
    if key != "sha256" or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise CheckpointError(f"MODEL_URI={uri!r}: the fragment must be #sha256=<64 hex digits>")
    return value


def download(uri: str, url: str, target: Path, pin: str | None) -> Path:
    """`url` into `target` atomically, checked against `pin`."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            try:
                with open_remote(url) as source:
                    shutil.copyfileobj(source, tmp, CHUNK)
            except BaseException:
                os.unlink(tmp.name)
                raise
    except CheckpointError:
        raise
    except Exception as error:  # network, HTTP status, credentials, disk
        raise CheckpointError(f"MODEL_URI={uri!r}: cannot fetch it: {first_line(error)}") from None
    if pin and (found := sha256_of(Path(tmp.name))) != pin:
        os.unlink(tmp.name)
        raise CheckpointError(f"MODEL_URI={uri!r}: the file's sha256 is {found}, not the pin")
    os.replace(tmp.name, target)
    return target


def open_remote(url: str):
    if urllib.parse.urlsplit(url).scheme in REMOTE:
        import fsspec  # torch depends on it

        try:
            return fsspec.open(url, "rb").open()
        except ImportError as error:  # fsspec names the package: s3fs, gcsfs
            raise CheckpointError(
                f"MODEL_URI={url!r}: {first_line(error)} (add it to the project's dependencies)"
            ) from None
    return urllib.request.urlopen(url, timeout=60)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
