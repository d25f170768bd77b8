"""``make install`` and ``make dist`` from the tests: run once per session, on this venv.

Make's own timestamps are the cache: the wheels are fetched again only when pyproject.toml
changes, the stage and the zipapp only when a source file does. ``-o STAMP`` keeps make from
reinstalling the venv the tests run in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.router_process import ROOT

SYSTEM_PYTHON = Path("/usr/bin/python3.11")
BUILD_TIMEOUT = 600.0  # the first build fetches every wheel


def make(*args: str, timeout: float = BUILD_TIMEOUT) -> tuple[subprocess.CompletedProcess[str],
                                                               float]:
    """Run make in the checkout with this venv; the result and the seconds it took."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = Path(sys.prefix)
    started = time.monotonic()
    done = subprocess.run(
        ["make", "-o", str(venv / ".installed"), f"VENV={venv}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done, time.monotonic() - started


def clean_env(home: Path) -> dict[str, str]:
    """An environment with nothing but a PATH and a HOME (for shiv's extraction)."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home)}


_INSTALLED: list[Path] = []  # one install per session, whichever module asks first


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``make install DESTDIR=<tmp> PREFIX=/usr``: the staging root."""
    if not _INSTALLED:
        root = tmp_path_factory.mktemp("destdir")
        make("install", f"DESTDIR={root}", "PREFIX=/usr")
        _INSTALLED.append(root)
    yield _INSTALLED[0]


@pytest.fixture(scope="session")
def zipapp() -> Path:
    """``make dist``: dist/serouter.pyz."""
    done, seconds = make("dist")
    if "shiv" in done.stdout:
        print(f"make dist built dist/serouter.pyz in {seconds:.0f} s")
    return ROOT / "dist" / "serouter.pyz"


def needs_system_python() -> None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} (the system's Python 3.11) is not installed")
