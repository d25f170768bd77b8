"""Packaging as a user meets it: ``pip install .`` gives the command, ``make install`` lays
out the package, units, configuration, contexts and policy sources, and ``make dist`` builds
one file that runs with the system's Python 3.11 and nothing else."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.daemon_support import HEAD, rawsocket, realms, tcp_listener
from tests.packaging_support import (
    SYSTEM_PYTHON,
    clean_env,
    installed,
    make,
    needs_system_python,
    zipapp,
)
from tests.raw_clients import RawWampClient
from tests.router_process import ROOT, Listener, free_port

__all__ = ["installed", "zipapp"]

pytestmark = pytest.mark.timeout(900)

VERSION = f"serouter {version('serouter')}"


def run(argv: list[str], home: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=clean_env(home), capture_output=True, text=True,
                          timeout=timeout, check=False, cwd="/")


def test_wheel_has_the_command_and_every_package() -> None:
    """The wheel ``pip install .`` builds: the ``serouter`` console script, every subpackage
    and the argo: endpoint plugin, and prometheus_client among its requirements."""
    make("build/wheel/.stamp")
    wheel = next((ROOT / "build" / "wheel").glob("serouter-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        metadata = archive.read(info.replace("entry_points.txt", "METADATA")).decode()
        assert "serouter = serouter.cli:main" in archive.read(info).decode()
    packages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "serouter").rglob("*.py")}
    assert packages <= names, packages - names
    assert "twisted/plugins/serouter_argo.py" in names
    assert "Requires-Dist: prometheus_client" in metadata


def test_pip_install_gives_the_serouter_command(tmp_path: Path) -> None:
    """A fresh venv, ``pip install`` of the wheel (dependencies from the local wheelhouse):
    ``serouter --version`` prints the package's version."""
    make("build/wheel/.stamp", "build/wheels/.stamp")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    wheel = next((ROOT / "build" / "wheel").glob("serouter-*.whl"))
    # this venv's pip installs into the new one (--python): no pip of its own to set up
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "--no-compile", "--no-index",
                    "--find-links", str(ROOT / "build" / "wheels"), str(wheel)],
                   check=True, timeout=300)
    done = run([str(venv / "bin" / "serouter"), "--version"], tmp_path)
    assert done.stdout.strip() == VERSION, done


INSTALLED = [
    "usr/bin/serouter",
    "usr/lib/serouter/serouter/__init__.py",
    "usr/lib/serouter/twisted/plugins/serouter_argo.py",
    "usr/lib/systemd/system/serouter.service",
    "usr/lib/systemd/system/serouter-nameserver.service",
    "usr/lib/systemd/system/serouter.socket",
    "etc/serouter/serouter.toml",
    "etc/serouter/nameserver.toml",
    "etc/serouter/wamp_contexts",
    "usr/share/serouter/policy/wamp.cil",
    "usr/share/serouter/policy/serouter.te",
    "usr/share/serouter/policy/serouter.if",
    "usr/share/serouter/policy/serouter.fc",
    "usr/share/serouter/policy/Makefile",
    "usr/share/doc/serouter/operations.md",
]


def test_make_install_lays_out_everything(installed: Path, tmp_path: Path) -> None:
    """make install DESTDIR=... PREFIX=/usr: the command runs with the system's Python alone
    and says the package's version; the installed configurations load."""
    missing = [path for path in INSTALLED if not (installed / path).is_file()]
    assert not missing, missing
    command = installed / "usr/bin/serouter"
    assert command.read_text().startswith(f"#!{SYSTEM_PYTHON} -I\n")
    needs_system_python()
    assert run([str(command), "--version"], tmp_path).stdout.strip() == VERSION
    for config in ("serouter.toml", "nameserver.toml"):
        done = run([str(command), "check-config", "-c", str(installed / "etc/serouter" / config)],
                   tmp_path)
        assert done.returncode == 0 and "OK" in done.stdout, done
    unit = (installed / "usr/lib/systemd/system/serouter.service").read_text()
    assert "ExecStart=/usr/bin/serouter run -c /etc/serouter/serouter.toml" in unit


def test_make_install_keeps_an_edited_configuration(installed: Path) -> None:
    """An upgrade (make install again) replaces the package and units but never an admin's
    files in /etc/serouter."""
    config = installed / "etc/serouter/serouter.toml"
    edited = config.read_text() + "# edited by the admin\n"
    config.write_text(edited)
    (installed / "usr/lib/serouter/serouter/stale.py").write_text("# left from an old version\n")
    make("install", f"DESTDIR={installed}", "PREFIX=/usr")
    assert config.read_text() == edited
    assert not (installed / "usr/lib/serouter/serouter/stale.py").exists()


def test_zipapp_runs_with_the_system_python_alone(zipapp: Path, tmp_path: Path) -> None:
    """dist/serouter.pyz from a clean environment: --version, run as an executable (its
    shebang), no module taken from the system's site-packages, and a short run serving a
    session, stopped by SIGTERM with exit 0."""
    needs_system_python()
    assert run([str(SYSTEM_PYTHON), str(zipapp), "--version"], tmp_path).stdout.strip() == VERSION
    assert run([str(zipapp), "--version"], tmp_path).stdout.strip() == VERSION
    verbose = run([str(SYSTEM_PYTHON), "-v", str(zipapp), "check-config"], tmp_path)
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    leaked = [line for line in verbose.stderr.splitlines()
              if line.startswith("# code object from") and "-packages/" in line
              and ".shiv/" not in line and "_distutils_hack" not in line]
    assert not leaked, leaked
    port = free_port()
    config = tmp_path / "serouter.toml"
    config.write_text(HEAD + realms("realm1") + rawsocket(f"tcp:{port}:interface=127.0.0.1"))
    process = subprocess.Popen([str(SYSTEM_PYTHON), str(zipapp), "run", "-c", str(config)],
                               env=clean_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        client = _connect_when_up(tcp_listener(port), process)
        assert client.session_id
        process.send_signal(signal.SIGTERM)
        assert client.recv() == [6, {}, "wamp.close.system_shutdown"]
        client.send([6, {}, "wamp.close.goodbye_and_out"])
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate(timeout=10)[0]
    assert "serouter ready" in output and "Traceback" not in output, output


def _connect_when_up(listener: Listener, process: subprocess.Popen[str]) -> RawWampClient:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.communicate()[0]
        try:
            return RawWampClient.connect(listener)
        except OSError:
            assert time.monotonic() < deadline, "the zipapp's router did not listen"
            time.sleep(0.1)
