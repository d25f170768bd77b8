"""The systemd units: what they promise (notify, reload, watchdog, the sandbox, the devices),
that they agree with the configurations they start, and that systemd-analyze accepts them as
``make install`` installs them."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from serouter.config import load_config, parse_config
from tests.packaging_support import installed
from tests.router_process import ROOT

__all__ = ["installed"]

UNITS = ROOT / "systemd"
SERVICES = ("serouter.service", "serouter-nameserver.service")
CONFIGS = {"serouter.service": "serouter.toml", "serouter-nameserver.service":
           "serouter-nameserver.toml"}


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections and keys; a key may repeat (ExecReload=, DeviceAllow=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


@pytest.mark.parametrize("name", SERVICES)
def test_service_is_notify_with_reload_and_watchdog(name: str) -> None:
    """Type=notify from the main process, SIGHUP on reload after check-config, a watchdog, a
    restart on failure, and the configuration the unit names is the one make install ships."""
    service = unit(name)["Service"]
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    config = "/etc/serouter/" + ("serouter.toml" if name == "serouter.service"
                                 else "nameserver.toml")
    assert service["ExecStart"] == [f"/usr/bin/serouter run -c {config}"]
    assert service["ExecReload"] == [f"/usr/bin/serouter check-config -c {config}",
                                     "/bin/kill -HUP $MAINPID"]
    assert service["WatchdogSec"] == ["30s"] and service["Restart"] == ["on-failure"]


@pytest.mark.parametrize("name", SERVICES)
def test_service_sandbox(name: str) -> None:
    """The hardening the issue asks for, and the Xen devices and nothing else."""
    service = {k: " ".join(v) for k, v in unit(name)["Service"].items()}
    expected = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "CapabilityBoundingSet": "CAP_AUDIT_WRITE",
        "SystemCallFilter": "@system-service", "DevicePolicy": "closed",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    }
    assert {k: service.get(k) for k in expected} == expected
    assert unit(name)["Service"]["DeviceAllow"] == ["/dev/xen/xenbus rw", "/dev/argo_stream rw"]
    assert service["RuntimeDirectory"] == ("serouter" if name == "serouter.service"
                                           else "serouter-nameserver")
    assert "ProtectKernelTunables" not in service  # /sys/fs/selinux/access must stay writable


def test_socket_unit_matches_the_router_configuration() -> None:
    """serouter.socket passes the Unix socket the installed configuration's systemd: listener
    names, under the service's runtime directory; the service requires the socket."""
    socket_unit = unit("serouter.socket")["Socket"]
    name = socket_unit["FileDescriptorName"][0]
    path = socket_unit["ListenStream"][0]
    runtime = unit("serouter.service")["Service"]["RuntimeDirectory"][0]
    assert path.startswith(f"/run/{runtime}/")
    assert unit("serouter.service")["Service"]["RuntimeDirectoryPreserve"] == ["yes"]
    config = load_config(str(UNITS / "serouter.toml"))
    assert f"systemd:domain=UNIX:name={name}" in [x.endpoint for x in config.listeners]
    assert "serouter.socket" in unit("serouter.service")["Unit"]["Requires"][0]


@pytest.mark.parametrize(("name", "mode"), [("serouter.toml", "router"),
                                            ("serouter-nameserver.toml", "nameserver")])
def test_shipped_configurations_load(name: str, mode: str) -> None:
    """The configurations make install puts in /etc/serouter load, in their mode, with
    metrics on loopback."""
    config = load_config(str(UNITS / name))
    assert config.router.mode == mode
    assert config.metrics is not None and "interface=127.0.0.1" in config.metrics.endpoint


def test_documented_examples_are_the_shipped_files() -> None:
    """configuration.md's example per mode loads, and says what the shipped file says."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("## One example per mode", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"### .*?`/etc/serouter/(\S+)`.*?\n```toml\n(.*?)```", section, re.S)
    assert [b[0] for b in blocks] == ["serouter.toml", "nameserver.toml"]
    for (target, example), shipped in zip(blocks, ("serouter.toml", "serouter-nameserver.toml"),
                                          strict=True):
        documented = parse_config(tomllib.loads(example), target, require_access=True)
        actual = load_config(str(UNITS / shipped))
        assert (documented.router, documented.access, documented.listeners, documented.metrics,
                documented.nameserver) == (actual.router, actual.access, actual.listeners,
                                           actual.metrics, actual.nameserver)


def test_systemd_analyze_verify_accepts_the_installed_units(installed: Path,
                                                            tmp_path: Path) -> None:
    """systemd-analyze verify (offline: it loads the units, checks every key, that the
    commands exist and are executable, and the dependencies) says nothing about the units make
    install installs. They name /usr/bin/serouter, which exists in the DESTDIR only: the copies
    verified here name the DESTDIR's (systemd-analyze --root= would want a whole system)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    command = installed / "usr/bin/serouter"
    for path in (installed / "usr/lib/systemd/system").iterdir():
        text = path.read_text().replace("/usr/bin/serouter", str(command))
        (tmp_path / path.name).write_text(text)
    names = [f"./{name}" for name in (*SERVICES, "serouter.socket")]
    done = subprocess.run([analyze, "verify", *names], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done
