#!/usr/bin/env bash
# Installs the Debian 12 packages that the tests and the demo need.
# Idempotent: a package already installed is skipped, and apt is not touched at
# all when nothing is missing. Run as root.
#
# See doc/testing.rst for what the test command changes on the host. Daemon
# packages are installed with --no-install-recommends, and
# libvirt-daemon-system is deliberately absent (it pulls in systemd-sysv).
set -euo pipefail

PACKAGES=(
  # image tools
  qemu-utils e2fsprogs dosfstools xfsprogs util-linux
  # proof that a hostile disk makes no process open a host file
  strace
  # config drives: ISO 9660 (genisoimage) and VFAT (mkfs.vfat + mcopy)
  genisoimage mtools
  # libvirt: python bindings build from source; daemon + KVM for end-to-end
  libvirt-dev pkg-config libvirt-daemon libvirt-daemon-driver-qemu
  libvirt-clients qemu-system-x86 qemu-block-extra
  # block and container storage: LVM metadata on a loop device, ploop images
  lvm2 ploop
  # databases
  postgresql mariadb-server
  # build helpers for python wheels
  gcc python3-dev python3-venv
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-system-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-system-deps: done"
