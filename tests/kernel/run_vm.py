"""Boot a live SELinux kernel under qemu and run tests/kernel/guest_test.py in it.

The host side of the kernel test: ``prepare()`` gets what the VM needs, ``boot()`` runs it.

- qemu-system-x86 is installed with apt when missing (root, or sudo without a password);
- Debian's kernel (``linux-image-amd64``'s current image) and ``busybox-static`` are fetched with
  ``apt-get download`` and unpacked here, never installed: the kernel's xz payload becomes an
  ELF ``vmlinux`` that qemu starts directly (PVH), which saves seconds of emulated
  decompression; only the virtio/9p modules are kept. They are cached under
  ``build/kernel-test/`` (``SEROUTER_KERNEL_CACHE``), one directory per package version;
- the initrd (busybox, the modules, ``guest_init.sh`` as /init) and the policies are built per
  run, and serouter's bytecode is compiled in the tree first: the guest's root is read-only and
  compiling there costs tens of seconds of emulated CPU.

``python -m tests.kernel.run_vm`` boots once and prints what the guest saw; the assertions are
in tests/test_kernel_selinux.py (``make test-kernel``).
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.kernel.policy import DOMAINS, build_policies

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = Path(os.environ.get("SEROUTER_KERNEL_CACHE", ROOT / "build" / "kernel-test"))
TIMEOUT = float(os.environ.get("SEROUTER_KERNEL_TIMEOUT", "300"))  # the whole VM, seconds
QEMU = "qemu-system-x86_64"
KERNEL_META = "linux-image-amd64"
# What the guest loads, in this order after their dependencies; built-in ones are skipped.
MODULES = ("virtio_pci", "9pnet_virtio", "9p")
MODULE_DIRS = ("/drivers/virtio/", "/net/9p/", "/fs/9p/", "/fs/netfs/", "/fs/fscache/")
CMDLINE = "console=ttyS0 quiet security=selinux enforcing=0 panic=-1 mitigations=off"


class Unavailable(Exception):
    """qemu cannot run on this host: the test skips, saying why."""


@dataclass
class Assets:
    qemu: str
    kernel: Path
    modules: list[Path]
    busybox: Path
    times: dict[str, float] = field(default_factory=dict)


@dataclass
class VmRun:
    job: Path
    results: dict[str, Any]
    console: str
    seconds: float

    def log(self, name: str) -> str:
        path = self.job / name
        return path.read_text(errors="replace") if path.exists() else ""


# -- apt -----------------------------------------------------------------------------------------


def _privileged(command: list[str]) -> list[str] | None:
    if os.geteuid() == 0:
        return command
    if shutil.which("sudo") and subprocess.run(
        ["sudo", "-n", "true"], capture_output=True, check=False
    ).returncode == 0:
        return ["sudo", "-n", *command]
    return None


def _run(command: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=600, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout


def _apt(command: list[str], cwd: Path | None = None, privileged: bool = False) -> str:
    """An apt command; if it fails, ``apt-get update`` (stale or missing lists) and retry."""
    full = _privileged(command) if privileged else command
    if full is None:
        raise Unavailable(f"`{shlex.join(command)}` needs root (or sudo without a password)")
    try:
        return _run(full, cwd)
    except RuntimeError:
        update = _privileged(["apt-get", "update", "-qq"])
        if update is None:
            raise
        _run(update)
        return _run(full, cwd)


def ensure_qemu() -> str:
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise Unavailable(f"the kernel test boots an x86_64 Debian kernel; this is "
                          f"{sys.platform}/{platform.machine()}")
    path = shutil.which(QEMU)
    if path is None:
        # the lock timeout: another apt (make apt-deps in a parallel run) may hold it
        _apt(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
              "-o", "DPkg::Lock::Timeout=300", "qemu-system-x86"], privileged=True)
        path = shutil.which(QEMU)
    if path is None:
        raise RuntimeError(f"{QEMU} is still missing after installing qemu-system-x86")
    return path


def _candidates(*packages: str) -> dict[str, dict[str, str]]:
    """The fields (Version, Depends, ...) of the versions apt would install, by package."""
    found: dict[str, dict[str, str]] = {}
    for stanza in _apt(["apt-cache", "show", "--no-all-versions", *packages]).split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line)
        if "Package" in fields:
            found[fields["Package"]] = fields
    return found


def _kernel_image(meta: dict[str, str]) -> tuple[str, str]:
    """The image package (and version) linux-image-amd64 depends on: Depends:
    linux-image-6.1.0-56-amd64 (= 6.1.192-2)."""
    for dependency in meta.get("Depends", "").split(","):
        name, _, version = dependency.strip().partition(" ")
        if name.startswith("linux-image-"):
            version = version.strip("()= ")
            return name, version or _candidates(name)[name]["Version"]
    raise RuntimeError(f"{KERNEL_META} depends on no linux-image package")


def _download(package: str, version: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    _apt(["apt-get", "download", "-qq", f"{package}={version}"], cwd=into)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if not debs:
        raise RuntimeError(f"apt-get download {package} left no .deb in {into}")
    return debs[-1]


def _members(deb: Path) -> Iterator[tuple[str, IO[bytes]]]:
    """The files of a .deb's data archive, streamed (dpkg-deb decompresses)."""
    dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert dpkg.stdout is not None
    try:
        with tarfile.open(fileobj=dpkg.stdout, mode="r|") as archive:
            for member in archive:
                if member.isfile():
                    file = archive.extractfile(member)
                    assert file is not None
                    yield member.name, file
    finally:
        dpkg.stdout.close()
        dpkg.wait()


# -- the kernel and busybox ------------------------------------------------------------------------


def _cached(package: str, version: str, unpack: Callable[[Path, Path], None]) -> Path:
    """``CACHE/package_version``, unpacked by ``unpack(deb, directory)`` the first time."""
    directory = CACHE / f"{package}_{version}"
    if (directory / ".complete").exists():
        return directory
    partial = Path(tempfile.mkdtemp(prefix=f".{package}.", dir=CACHE))
    try:
        deb = _download(package, version, partial / "deb")
        unpack(deb, partial)
        shutil.rmtree(partial / "deb")
        (partial / ".complete").touch()
        try:
            partial.rename(directory)  # atomic: a concurrent run sees all of it or none
        except OSError:
            if not (directory / ".complete").exists():
                raise  # else a concurrent run got there first
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return directory


def _unpack_kernel(deb: Path, into: Path) -> None:
    modules = into / "modules"
    modules.mkdir()
    for name, file in _members(deb):
        base = os.path.basename(name)
        if "/boot/vmlinuz-" in name:
            (into / "vmlinuz").write_bytes(file.read())
        elif "/boot/config-" in name:
            (into / "config").write_bytes(file.read())
        elif any(d in name for d in MODULE_DIRS) and "/kernel/" in name:
            data = file.read()
            if base.endswith(".ko.xz"):
                data, base = lzma.decompress(data), base[:-3]
            if base.endswith(".ko"):
                (modules / base.replace("-", "_")).write_bytes(data)
    config = (into / "config").read_text()
    vmlinux = _vmlinux((into / "vmlinuz").read_bytes()) if "CONFIG_PVH=y" in config else None
    if vmlinux is not None:
        (into / "vmlinux").write_bytes(vmlinux)
        (into / "vmlinuz").unlink()


def _vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF kernel inside an xz-compressed bzImage, or None (boot the bzImage then)."""
    start = bzimage.find(b"\xfd7zXZ\x00")
    if start < 0:
        return None
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[start:])
    except lzma.LZMAError:
        return None
    return elf if elf.startswith(b"\x7fELF") else None


def _depends(module: Path) -> list[str]:
    data = module.read_bytes()
    at = data.find(b"\0depends=")
    if at < 0:
        return []
    value = data[at + 9:data.index(b"\0", at + 1)].decode()
    return [name.replace("-", "_") for name in value.split(",") if name]


def _load_order(directory: Path) -> list[Path]:
    """The modules MODULES need, dependencies first (absent ones are built in)."""
    order: list[Path] = []

    def visit(name: str) -> None:
        path = directory / f"{name}.ko"
        if not path.exists() or path in order:
            return
        for dependency in _depends(path):
            visit(dependency)
        order.append(path)

    for name in MODULES:
        visit(name)
    return order


def _unpack_busybox(deb: Path, into: Path) -> None:
    for name, file in _members(deb):
        if name.endswith("/bin/busybox"):
            (into / "busybox").write_bytes(file.read())
            return
    raise RuntimeError(f"{deb.name} has no bin/busybox")


def prepare() -> Assets:
    """Everything the VM needs on this host; Unavailable if qemu cannot run here."""
    started = time.monotonic()
    qemu = ensure_qemu()
    if not Path("/etc/selinux").is_dir():  # the guest mounts its own config over it
        raise RuntimeError("/etc/selinux is missing on this host: install selinux-utils "
                           "(`make apt-deps` installs it)")
    installed = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    found = _candidates(KERNEL_META, "busybox-static")
    kernel_dir = _cached(*_kernel_image(found[KERNEL_META]), _unpack_kernel)
    busybox_dir = _cached("busybox-static", found["busybox-static"]["Version"], _unpack_busybox)
    kernel = kernel_dir / "vmlinux"
    if not kernel.exists():
        kernel = kernel_dir / "vmlinuz"
    times = {"qemu": installed - started, "kernel+busybox": time.monotonic() - installed}
    return Assets(qemu, kernel, _load_order(kernel_dir / "modules"),
                  busybox_dir / "busybox", times)


# -- the initrd and the job --------------------------------------------------------------------


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
                inode: int = 0) -> bytes:
    """One "newc" cpio entry (the initramfs format)."""
    encoded = name.encode() + b"\0"
    fields = (inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields)
    entry = header + encoded
    entry += b"\0" * (-len(entry) % 4)
    return entry + data + b"\0" * (-len(data) % 4)


def build_initrd(assets: Assets, out: Path) -> Path:
    directory, executable = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o755
    files: list[tuple[str, int, bytes]] = [
        (name, directory, b"") for name in
        ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules")
    ]
    files.append(("init", executable, (HERE / "guest_init.sh").read_bytes()))
    files.append(("bin/busybox", executable, assets.busybox.read_bytes()))
    files.append(("modules", stat.S_IFREG | 0o644,
                  "".join(f"{m.stem}\n" for m in assets.modules).encode()))
    files += [(f"lib/modules/{m.name}", stat.S_IFREG | 0o644, m.read_bytes())
              for m in assets.modules]
    archive = b"".join(_cpio_entry(name, mode, data, inode=i + 1)
                       for i, (name, mode, data) in enumerate(files))
    archive += _cpio_entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1), inode=len(files) + 1)
    archive += _cpio_entry("TRAILER!!!", 0)
    out.write_bytes(gzip.compress(archive, 6))
    return out


def write_job(job: Path) -> None:
    """The policies, the contexts file and what the guest runs, in the shared directory."""
    for path in (ROOT, Path(sys.executable)):
        if path.is_relative_to("/run"):  # the guest mounts a tmpfs there
            raise RuntimeError(f"{path}: the guest cannot see the host's /run")
    policies = build_policies(job)
    (job / "job.json").write_text(json.dumps({"policies": policies, "domains": DOMAINS}))
    env = {
        "SEROUTER_ROOT": str(ROOT),
        "SEROUTER_PYTHON": sys.executable,
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": "/run",
        "TMPDIR": "/run",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",  # the host's root is read-only in the guest
        "PYTHONUNBUFFERED": "1",
    }
    (job / "job.env").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))


def compile_bytecode() -> None:
    """serouter's .pyc in the tree (gitignored): the guest cannot write them, and compiling
    the package on an emulated CPU costs more than the rest of a router start."""
    # not checked: a file that does not compile fails in the guest, with its traceback
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(ROOT / "serouter"),
                    str(ROOT / "tests" / "kernel"), str(ROOT / "tests" / "__init__.py")],
                   capture_output=True, check=False, timeout=300)


def _virtfs(path: Path | str, tag: str, readonly: bool) -> str:
    escaped = str(path).replace(",", ",,")
    option = f"local,path={escaped},mount_tag={tag},security_model=none"
    return option + (",readonly=on,multidevs=remap" if readonly else "")


def boot(assets: Assets, job: Path, timeout: float = TIMEOUT) -> VmRun:
    """Run the guest test once; what it saw is in the result (the guest never asserts)."""
    started = time.monotonic()
    job.mkdir(parents=True, exist_ok=True)
    compile_bytecode()
    write_job(job)
    initrd = build_initrd(assets, job / "initrd.gz")
    cpus = max(1, min(4, os.cpu_count() or 1))
    command = [
        assets.qemu, "-accel", "tcg", "-smp", str(cpus), "-m", "1024",
        "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
        "-kernel", str(assets.kernel), "-initrd", str(initrd), "-append", CMDLINE,
        "-virtfs", _virtfs("/", "hostroot", readonly=True),
        "-virtfs", _virtfs(job, "job", readonly=False),
    ]
    console_path = job / "console.log"
    prepared = time.monotonic()
    with open(console_path, "wb") as console:
        try:
            subprocess.run(command, stdin=subprocess.DEVNULL, stdout=console,
                           stderr=subprocess.STDOUT, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            console.write(f"\nrun_vm: qemu killed after {timeout:.0f} s\n".encode())
    ended = time.monotonic()
    console_text = console_path.read_text(errors="replace")
    results_path = job / "results.json"
    if not results_path.exists():
        raise RuntimeError(f"the guest wrote no results; console:\n{console_text[-6000:]}")
    results = json.loads(results_path.read_text())
    results["host_times"] = {**assets.times, "job": prepared - started, "vm": ended - prepared}
    return VmRun(job, results, console_text, ended - started)


def main() -> int:
    started = time.monotonic()
    try:
        assets = prepare()
    except Unavailable as e:
        print(f"run_vm: skipped: {e}")
        return 0
    job = Path(tempfile.mkdtemp(prefix="serouter-kernel-"))
    run = boot(assets, job)
    print(json.dumps(run.results["seen"], indent=1))
    print("guest times:", json.dumps(run.results["times"]))
    print("host times:", json.dumps(run.results["host_times"]))
    print(f"total {time.monotonic() - started:.1f} s; job directory {job}")
    if run.results["error"]:
        print(run.results["error"])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
