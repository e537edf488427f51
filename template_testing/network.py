"""Online by default: the image tests take torch from the PyTorch index and base images from
their registry, as users do. The offline fallback (a local torch wheel index, base images built
from Debian packages) is chosen only when that cannot be reached, checked once up front, or when
TDT_OFFLINE forces it. Its torch wheels come from an explicit setting, never from pip's
configuration:

    TDT_OFFLINE=1|0          force the fallback, or force online (default: check)
    TDT_OFFLINE_WHEELS=...   folders of torch wheels (joined with ':'), or the URL of a torch
                             index laid out like https://download.pytorch.org/whl
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from torch_compat import default_answer

OFFLINE = "TDT_OFFLINE"
OFFLINE_WHEELS = "TDT_OFFLINE_WHEELS"
# The registry the Dockerfiles' python:*-slim-* base images come from.
REGISTRY = "https://registry-1.docker.io/v2/"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # Debian and Ubuntu


def torch_index_default() -> str:
    """The template's default torch index base (cookiecutter.json's `torch_index_url`)."""
    return default_answer("torch_index_url")


@dataclass(frozen=True)
class Network:
    offline: bool
    reason: str
    wheel_folders: tuple[Path, ...] = ()
    torch_index: str | None = None  # a torch index base to use instead of a local wheel index

    def describe(self) -> str:
        if not self.offline:
            return f"image tests: online ({self.reason})"
        wheels = self.torch_index or ":".join(map(str, self.wheel_folders)) or "none given"
        return (
            f"image tests: OFFLINE FALLBACK ({self.reason}); torch wheels from {OFFLINE_WHEELS}"
            f"={wheels} and PyPI; base images built from Debian packages"
        )


def reachable(url: str, timeout: float = 5) -> bool:
    """Whether `url` answers at all: any HTTP status (the registry says 401) counts."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def choose(
    env: Mapping[str, str] = os.environ, probe: Callable[[str], bool] = reachable
) -> Network:
    """Online unless forced offline or the PyTorch index or the registry cannot be reached."""
    wheels = env.get(OFFLINE_WHEELS, "").strip()
    is_url = wheels.startswith(("http://", "https://"))
    offline = dict(
        offline=True,
        torch_index=wheels.rstrip("/") if is_url else None,
        wheel_folders=() if is_url else tuple(Path(p) for p in wheels.split(":") if p),
    )
    forced = env.get(OFFLINE, "").strip().lower()
    if forced in {"1", "true", "yes"}:
        return Network(reason=f"{OFFLINE}={env[OFFLINE]}", **offline)
    if forced in {"0", "false", "no"}:
        return Network(offline=False, reason=f"{OFFLINE}={env[OFFLINE]}")
    if forced:
        raise ValueError(f"{OFFLINE}={env[OFFLINE]!r}: use 1 (offline fallback) or 0 (online)")
    index = torch_index_default()
    unreachable = [url for url in (f"{index}/", REGISTRY) if not probe(url)]
    if unreachable:
        return Network(reason=f"cannot reach {' or '.join(unreachable)}", **offline)
    return Network(offline=False, reason=f"{index} and {REGISTRY} answer")


@cache
def this_host() -> Network:
    """The choice for this process, made once."""
    return choose()


def ca_bundle() -> str | None:
    """The CA bundle to trust for PyPI (a TLS-intercepting proxy needs its own), if any:
    REQUESTS_CA_BUNDLE or SSL_CERT_FILE, else the system bundle of Debian and Ubuntu."""
    for candidate in (os.environ.get("REQUESTS_CA_BUNDLE"), os.environ.get("SSL_CERT_FILE")):
        if candidate and Path(candidate).is_file():
            return candidate
    return str(SYSTEM_CA_BUNDLE) if SYSTEM_CA_BUNDLE.is_file() else None
