#!/bin/sh
# Installs the Debian packages dsv3 needs. Idempotent: does nothing when they
# are already present, so it works offline on a prepared machine.
set -e
PKGS="build-essential libjansson-dev libpcre2-dev libmicrohttpd-dev curl chromium"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
