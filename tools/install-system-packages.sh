#!/bin/sh
# Install the Debian packages listed in tools/system-packages.txt that are not
# installed yet. Runs apt-get as root (CI) or through passwordless sudo; where
# neither is possible it names the missing packages and carries on, and the
# tests that need them say so when they skip.
set -eu
here=$(dirname "$0")
missing=""
for pkg in $(sed -e 's/#.*//' "$here/system-packages.txt"); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    apt_get="apt-get"
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    apt_get="sudo -n apt-get"
else
    echo "kerasllm: not root, so these Debian packages were not installed:$missing" >&2
    echo "kerasllm: install them with: sudo apt-get install -y$missing" >&2
    exit 0
fi
echo "kerasllm: installing Debian packages:$missing" >&2
$apt_get update -qq
DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq --no-install-recommends $missing >&2
