#!/usr/bin/env bash
# Install what natlab needs on Debian 12/13 or Ubuntu 22.04/24.04 (idempotent), then the venv.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "natlab setup: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (try: sudo make experiment)"
[ -r /etc/os-release ] || die "unknown OS: no /etc/os-release"
. /etc/os-release
case "${ID:-}:${ID_LIKE:-}" in
  debian:*|ubuntu:*|*:*debian*) ;;
  *) die "unsupported OS '${PRETTY_NAME:-?}': Debian 12/13 or Ubuntu 22.04+ required" ;;
esac

PKGS="mininet kamailio coturn baresip tshark tcpdump bridge-utils iptables conntrack iproute2
      iputils-ping net-tools python3-venv procps chromium nftables rtpengine-daemon linphone-cli
      sipvicious sipsak libnetfilter-queue-dev gcc python3-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "natlab setup: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  # Distro services would listen in the root namespace; natlab runs its own copies.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    for svc in kamailio coturn rtpengine-daemon; do
      case "$missing" in *" $svc"*) systemctl disable --now "$svc" >/dev/null 2>&1 || true ;; esac
    done
  fi
fi
# rtpengine's package would manage the host's iptables: natlab runs it in userspace mode only.
if [ -f /etc/default/rtpengine-daemon ]; then
  sed -i 's/^MANAGE_IPTABLES=yes/MANAGE_IPTABLES=no/' /etc/default/rtpengine-daemon
fi

# pjsua2-python has wheels for CPython 3.8-3.12 only: pick a supported interpreter.
supported() { "$1" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null; }
PY="" ; SYSTEM_SITE=""
if supported /usr/bin/python3; then
  PY=/usr/bin/python3; SYSTEM_SITE="--system-site-packages"   # Debian's mininet module
else
  for cand in python3.12 python3.11 python3.10 \
      $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[012]*/bin/python3 2>/dev/null | sort -rV); do
    if command -v "$cand" >/dev/null && supported "$(command -v "$cand")"; then
      PY=$(command -v "$cand"); break
    fi
  done
fi
[ -n "$PY" ] || die "no Python 3.10-3.12 found (pjsua2-python has no wheel for $(/usr/bin/python3 -V 2>&1)); install python3.12"

if [ ! -x .venv/bin/python ] || ! supported .venv/bin/python; then
  rm -rf .venv
  "$PY" -m venv $SYSTEM_SITE .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  # the shaper's libnetfilter_queue reader (impair.reader); natlab falls back to its own
  .venv/bin/pip install -q --disable-pip-version-check -e '.[shaper]' \
    || echo "natlab setup: netfilterqueue not built; the WAN shaper uses its netlink reader" >&2
  .venv/bin/python -c 'import mininet' 2>/dev/null || .venv/bin/pip install -q 'mininet==2.3.0.dev6'
  touch .venv/.installed
fi
.venv/bin/python -c 'import mininet, pjsua2, scapy' || die "venv is incomplete: remove .venv and retry"
