#!/usr/bin/env bash
# Removes left4me from a host: what install.sh and `l4d2ctl install` put outside $ROOT. Safe to
# run again.
#
#   deploy/uninstall.sh
#
# It stops the game servers, the schedules, the reconciler, the web app and left4me live, removes their units,
# the binaries, the host tuning (the sysctl drop-in, the nft table and its unit) and the state
# repo's safe.directory entry. It keeps what is yours: $ROOT (/var/lib/left4me: the state repo,
# the servers' data, backups, the game), /etc/left4me and the user left4me; deploy/README.md
# ("Uninstalling") says how to keep or remove them.
set -euo pipefail

case "${1:-}" in
  -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
  '') ;;
  *) echo "uninstall.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
esac

step() { printf '==> %s\n' "$*"; }
[ "$(id -u)" -eq 0 ] || { echo "uninstall.sh: run it as root (sudo deploy/uninstall.sh)" >&2; exit 1; }
root=/var/lib/left4me
units=/usr/local/lib/systemd/system

step "the services, the servers and the schedules"
systemctl disable --now --quiet left4me-web.service left4me-reconciler.service left4me-live.service left4me-live.socket 2>/dev/null || true
systemctl stop 'left4me-server@*' 'left4me-schedule@*' left4me-game.slice 2>/dev/null || true
for link in /etc/systemd/system/*.wants/left4me-server@* /etc/systemd/system/*.wants/left4me-schedule@*; do
  rm -f "$link"
done

step "host tuning"
# Stopping the unit deletes the table inet left4me; the host's own ruleset is untouched.
systemctl disable --now --quiet left4me-dscp.service 2>/dev/null || true
nft delete table inet left4me 2>/dev/null || true
rm -f /etc/left4me/dscp.nft /etc/sysctl.d/60-left4me.conf
# The host's own sysctl files apply again; a value only left4me's file set stays until a reboot.
sysctl -q --system >/dev/null 2>&1 || true

step "units and binaries"
# The units, and the servers' drop-ins of resource limits (left4me-server@<name>.service.d/).
rm -rf "$units"/left4me-*
systemctl daemon-reload
rm -f /usr/local/bin/l4d2ctl /usr/local/bin/left4me /usr/local/bin/left4me-web
git config --system --unset-all safe.directory "$root/state" 2>/dev/null || true

step "done; kept: $root, /etc/left4me and the user left4me (see deploy/README.md)"
