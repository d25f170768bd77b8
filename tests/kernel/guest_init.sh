#!/bin/busybox sh
# /init of the test VM (run_vm.py packs it into the initrd with a static busybox and the
# virtio/9p modules listed in /modules). It mounts the host's root read-only over virtio-9p, so
# the guest runs the host's Python, venv and checkout unchanged, and the job directory
# read-write; runs tests/kernel/guest_test.py in the host's root; and powers off. It must never
# write to the host's root, and every path out of it ends in poweroff (qemu then exits).

/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "guest: init failed: $*"
    poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in $(cat /modules); do
    insmod "/lib/modules/$module.ko" || fail "insmod $module"
done

root=/newroot
nine="trans=virtio,version=9p2000.L,msize=512000"
# cache=loose: the host's root does not change under the test, and Python stats a lot
mount -t 9p -o "$nine,ro,cache=loose" hostroot $root || fail "mount the host's root"
mount -t proc proc $root/proc
mount -t sysfs sysfs $root/sys
mount -t selinuxfs selinuxfs $root/sys/fs/selinux || fail "mount selinuxfs (security=selinux?)"
mount -t devtmpfs devtmpfs $root/dev
mount -t tmpfs -o mode=755 tmpfs $root/run
mkdir -p $root/run/job
mount -t 9p -o "$nine" job $root/run/job || fail "mount the job directory"
# libselinux counts SELinux as disabled unless /etc/selinux/config exists (runcon refuses)
mount -t tmpfs -o mode=755 tmpfs $root/etc/selinux || fail "no /etc/selinux on the host"
printf 'SELINUX=enforcing\nSELINUXTYPE=serouter-test\n' > $root/etc/selinux/config

chroot $root /bin/sh -c '. /run/job/job.env && cd "$SEROUTER_ROOT" &&
    exec "$SEROUTER_PYTHON" -m tests.kernel.guest_test /run/job'
echo "guest: guest_test exited $?"
sync
poweroff -f
