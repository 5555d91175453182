#!/usr/bin/env bash
# Installs left4me on a Debian 13 host, or updates it. Safe to run again.
#
#   deploy/install.sh [--bin-dir DIR] [--steamcmd PATH] [--ports FIRST-LAST] [--no-game]
#
#   --bin-dir DIR     where the built binaries are (default: target/release of this checkout,
#                     built there with cargo when they are missing)
#   --steamcmd PATH   the steamcmd to install the game with (default: steamcmd on the PATH,
#                     from Debian's non-free "steamcmd" package)
#   --ports FIRST-LAST  the game ports, as left4me.yaml's spec.ports (default 27015-27115): their
#                     traffic is marked for low latency and kept off the ephemeral ports
#   --no-game         set up everything but do not download the game (run `l4d2ctl install` later)
#
# It creates the user left4me (home /var/lib/left4me, password locked), the folders of $ROOT, the
# settings in /etc/left4me, the SSH keys other hosts of a fleet know this one by (/etc/left4me/ssh,
# with sshd's drop-in for the user left4me; deploy/add-host.sh authorises them), copies the
# binaries to /usr/local/bin, and runs `l4d2ctl install`,
# which downloads the game and installs the units; then it enables the reconciler, the web
# app (which listens on 127.0.0.1:8080; see /etc/left4me/web.env; not on a host deploy/add-host.sh
# made an agent, where it is masked) and left4me live (the game's
# log stream, UDP 127.0.0.1:27500, LEFT4ME_LIVE_PORT in host.env). It tunes the host's network
# for game traffic (deploy/README.md, "Host tuning"); deploy/uninstall.sh removes it all.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="$here/target/release"
steamcmd=""
ports=27015-27115
game=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --steamcmd) steamcmd="$2"; shift 2 ;;
    --ports) ports="$2"; shift 2 ;;
    --no-game) game=no; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

step() { printf '==> %s\n' "$*"; }
fail() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run it as root (sudo deploy/install.sh)"
root=/var/lib/left4me
user=left4me

command -v git >/dev/null || fail "git is missing: apt-get install git"
command -v nft >/dev/null || fail "nft is missing: apt-get install nftables"
[[ "$ports" =~ ^([0-9]{4,5})-([0-9]{4,5})$ ]] && [ "${BASH_REMATCH[1]}" -ge 1024 ] \
  && [ "${BASH_REMATCH[1]}" -le "${BASH_REMATCH[2]}" ] && [ "${BASH_REMATCH[2]}" -le 65535 ] \
  || fail "--ports $ports: write the range as FIRST-LAST, 1024 to 65535 (left4me.yaml's spec.ports)"
missing=no
for binary in l4d2ctl left4me left4me-web; do
  [ -x "$bin_dir/$binary" ] || missing=yes
done
if [ "$missing" = yes ] && [ "$bin_dir" = "$here/target/release" ] && command -v cargo >/dev/null; then
  step "building the release binaries (cargo build --release)"
  (cd "$here" && cargo build --release --quiet --bin l4d2ctl --bin left4me --bin left4me-web)
fi
for binary in l4d2ctl left4me left4me-web; do
  [ -x "$bin_dir/$binary" ] || fail "$bin_dir/$binary is missing; build with: cargo build --release"
done
if [ -z "$steamcmd" ]; then
  steamcmd=$(command -v steamcmd || true)
  [ -n "$steamcmd" ] || [ "$game" = no ] \
    || fail "steamcmd not found: install Debian's steamcmd package (non-free, i386) or pass --steamcmd PATH"
fi

step "user $user"
# Its shell is /bin/sh, not nologin: sshd runs a key's forced command (`left4me remote`, see
# deploy/add-host.sh) through the user's login shell, and nologin would refuse it. Its password
# stays locked and every key it may log in with is root's to authorise, so nothing else gets in.
if ! id "$user" >/dev/null 2>&1; then
  useradd --system --home-dir "$root" --no-create-home --shell /bin/sh --user-group "$user"
elif [ "$(getent passwd "$user" | cut -d: -f7)" != /bin/sh ]; then
  usermod --shell /bin/sh "$user"
fi

step "folders under $root"
install -d -m 0755 -o "$user" -g "$user" "$root"

step "binaries into /usr/local/bin"
for binary in l4d2ctl left4me left4me-web; do
  install -m 0755 "$bin_dir/$binary" "/usr/local/bin/$binary.new"
  mv -f "/usr/local/bin/$binary.new" "/usr/local/bin/$binary"
done

step "settings in /etc/left4me"
install -d -m 0755 /etc/left4me
if [ ! -f /etc/left4me/host.env ]; then
  cat > /etc/left4me/host.env.new <<ENV
# left4me host settings, read by l4d2ctl, left4me and left4me-web (and their units).
LEFT4ME_ROOT=$root
LEFT4ME_USER=$user
LEFT4ME_STEAMCMD=${steamcmd:-steamcmd}
LEFT4ME_UNIT_DIR=/usr/local/lib/systemd/system
# The address players connect to (the host's public DNS name or IP address), in the web app's
# connect links; unset, they name the host the browser reached the web app at.
#LEFT4ME_PUBLIC_ADDRESS=game.example.org
# Where left4me live takes the game servers' log stream (UDP on 127.0.0.1).
LEFT4ME_LIVE_PORT=27500
ENV
  chmod 0644 /etc/left4me/host.env.new
  mv /etc/left4me/host.env.new /etc/left4me/host.env
fi

if [ ! -f /etc/left4me/web.env ]; then
  cat > /etc/left4me/web.env.new <<ENV
# left4me-web settings. TLS and a public name belong to a reverse proxy in front.
LEFT4ME_WEB_LISTEN=127.0.0.1:8080
# Set when the proxy in front serves HTTPS: session cookies are then marked Secure.
#LEFT4ME_WEB_SECURE_COOKIES=true
# The reverse proxies in front (addresses or CIDR blocks): their X-Forwarded-For names the client.
#LEFT4ME_TRUSTED_PROXIES=127.0.0.1,::1
ENV
  chmod 0644 /etc/left4me/web.env.new
  mv /etc/left4me/web.env.new /etc/left4me/web.env
fi

if [ ! -f /etc/left4me/secrets.env ]; then
  # Root's alone: the URLs of alerts are secrets (a webhook's URL is all it takes to post to it).
  (umask 077 && cat > /etc/left4me/secrets.env.new <<'ENV'
# left4me secrets, read by the reconciler (root) when it delivers an alert; never put them in git.
# An alert's secretRef names a line here, for example:
#OPS_WEBHOOK=https://discord.com/api/webhooks/<id>/<token>
ENV
  )
  chmod 0600 /etc/left4me/secrets.env.new
  mv /etc/left4me/secrets.env.new /etc/left4me/secrets.env
fi

step "SSH keys in /etc/left4me/ssh"
# How the hosts of a fleet reach each other (deploy/README.md, "Add a host"): the control host's
# web app with its key `web` (its user's alone), each host's agent with `agent` (root's), every
# host checked against known_hosts. Which keys may log in as $user is root's to say:
# authorized_keys is root's, so a game (which runs as $user) can never add one.
ssh_dir=/etc/left4me/ssh
install -d -m 0750 -o root -g "$user" "$ssh_dir"
if command -v ssh-keygen >/dev/null; then
  make_key() { # <path> <owner>: an ed25519 key, made once, then only its owner and mode are set
    if [ ! -f "$1" ]; then
      rm -f "$1.new" "$1.new.pub"
      ssh-keygen -q -t ed25519 -N '' -C "left4me-$(basename "$1")@$(hostname)" -f "$1.new"
      chown "$2:$2" "$1.new" "$1.new.pub"
      mv -f "$1.new.pub" "$1.pub"
      mv -f "$1.new" "$1"
    fi
    chown "$2:$2" "$1" "$1.pub"
    chmod 0600 "$1"
    chmod 0644 "$1.pub"
  }
  make_key "$ssh_dir/web" "$user"
  make_key "$ssh_dir/agent" root
else
  echo "    no ssh-keygen (Debian's openssh-client): no keys made; this host joins no fleet until it is installed and install.sh runs again"
fi
[ -e "$ssh_dir/known_hosts" ] || install -m 0640 -o root -g "$user" /dev/null "$ssh_dir/known_hosts"
[ -e "$ssh_dir/authorized_keys" ] || install -m 0644 -o root -g root /dev/null "$ssh_dir/authorized_keys"
chown root:"$user" "$ssh_dir/known_hosts"
chmod 0640 "$ssh_dir/known_hosts"
chown root:root "$ssh_dir/authorized_keys"
chmod 0644 "$ssh_dir/authorized_keys"
if [ -d /etc/ssh/sshd_config.d ]; then
  dropin=/etc/ssh/sshd_config.d/left4me.conf
  cat > "$dropin.new" <<SSHD
# Installed by left4me's install.sh, which rewrites it. The user $user logs in with the keys of
# $ssh_dir/authorized_keys alone (root's file; each key's forced command is \`left4me remote\`),
# never with a password, and gets no forwarding, tunnel or terminal.
Match User $user
	AuthorizedKeysFile $ssh_dir/authorized_keys
	PasswordAuthentication no
	KbdInteractiveAuthentication no
	AllowTcpForwarding no
	X11Forwarding no
	PermitTTY no
	AllowAgentForwarding no
	PermitTunnel no
SSHD
  chmod 0644 "$dropin.new"
  old=""
  [ -f "$dropin" ] && old=$(cat "$dropin")
  mv -f "$dropin.new" "$dropin"
  # A drop-in sshd refuses would lock everyone out at its next start: checked, and taken back.
  # (sshd -t needs its privilege separation folder, there while sshd runs.)
  if command -v sshd >/dev/null && [ -d /run/sshd ] && ! sshd -t 2>/dev/null; then
    if [ -n "$old" ]; then printf '%s\n' "$old" > "$dropin"; else rm -f "$dropin"; fi
    echo "    sshd -t refuses the configuration with $dropin; it is left as it was: $(sshd -t 2>&1 | head -3)"
  else
    for unit in ssh.service sshd.service sim-sshd.service; do
      if systemctl is-active --quiet "$unit" 2>/dev/null; then
        systemctl try-reload-or-restart "$unit" || echo "    could not reload $unit: reload it by hand"
      fi
    done
  fi
else
  echo "    no /etc/ssh/sshd_config.d: left4me's sshd settings are not installed (see deploy/README.md, \"Add a host\")"
fi

step "host tuning: /etc/sysctl.d/60-left4me.conf and left4me-dscp.service"
# deploy/README.md ("Host tuning") says why each setting is there.
cat > /etc/sysctl.d/60-left4me.conf.new <<SYSCTL
# Installed by left4me's install.sh, which rewrites it; deploy/README.md says why each is set.
net.core.rmem_max = 8388608
net.core.wmem_max = 8388608
net.core.rmem_default = 1048576
net.core.wmem_default = 1048576
net.core.netdev_max_backlog = 5000
net.core.default_qdisc = fq_codel
net.ipv4.udp_rmem_min = 16384
net.ipv4.udp_wmem_min = 16384
net.ipv4.ip_local_reserved_ports = $ports
SYSCTL
chmod 0644 /etc/sysctl.d/60-left4me.conf.new
mv /etc/sysctl.d/60-left4me.conf.new /etc/sysctl.d/60-left4me.conf
# Each setting is applied where this network namespace may change it: in a container some are the
# host's alone (read-only here, or not there at all), and those are left to the host.
left_out=()
while IFS='=' read -r key value; do
  key=$(echo "$key" | tr -d ' ')
  case "$key" in ''|'#'*) continue ;; esac
  if [ -w "/proc/sys/${key//.//}" ]; then
    sysctl -q -w "$key=$(echo "$value" | sed 's/^ *//')"
  else
    left_out+=("$key")
  fi
done < /etc/sysctl.d/60-left4me.conf
if [ ${#left_out[@]} -gt 0 ]; then
  echo "    not set in this network namespace (the host's own): ${left_out[*]}"
fi
cat > /etc/left4me/dscp.nft.new <<NFT
# Installed by left4me's install.sh, which rewrites it: game traffic (UDP from the game ports)
# marked CS4, the DSCP class of real-time interactive traffic (RFC 4594). A table of its own,
# replaced whole, so the host's own ruleset is never touched.
table inet left4me
delete table inet left4me
table inet left4me {
  chain output {
    type filter hook output priority mangle; policy accept;
    udp sport $ports ip dscp set cs4
    udp sport $ports ip6 dscp set cs4
  }
}
NFT
chmod 0644 /etc/left4me/dscp.nft.new
mv /etc/left4me/dscp.nft.new /etc/left4me/dscp.nft
install -d -m 0755 /usr/local/lib/systemd/system
cat > /usr/local/lib/systemd/system/left4me-dscp.service.new <<UNIT
# Installed by left4me's install.sh, which rewrites it.
[Unit]
Description=left4me: DSCP marks on game traffic (nft table inet left4me)
DefaultDependencies=no
Before=network-pre.target shutdown.target
Wants=network-pre.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$(command -v nft) -f /etc/left4me/dscp.nft
ExecStop=$(command -v nft) delete table inet left4me

[Install]
WantedBy=multi-user.target
UNIT
chmod 0644 /usr/local/lib/systemd/system/left4me-dscp.service.new
mv /usr/local/lib/systemd/system/left4me-dscp.service.new /usr/local/lib/systemd/system/left4me-dscp.service
systemctl daemon-reload
systemctl enable --quiet left4me-dscp.service
# Restarted, not only started: new ports are loaded at once.
systemctl restart left4me-dscp.service

step "the state repo in $root/state"
if [ ! -e "$root/state" ]; then
  # Shared with the group: the web app (user $user) commits to it, and people in the group
  # $user may push to it.
  git init --quiet --shared=group --initial-branch=main "$root/state"
  # A push updates the checked-out branch when its work tree is clean, and is refused otherwise.
  git -C "$root/state" config receive.denyCurrentBranch updateInstead
  chown -R "$user:$user" "$root/state"
fi
# The work tree is a checkout that nobody edits on the host: every push resets it to the pushed
# commit, also after the web app committed without updating it (a file it could not write).
hook="$root/state/.git/hooks/push-to-checkout"
if [ -d "$root/state/.git" ] && [ ! -e "$hook" ]; then
  install -d -m 2775 -o "$user" -g "$user" "$root/state/.git/hooks"
  cat > "$hook.new" <<'HOOK'
#!/bin/sh
# Installed by left4me's install.sh: the host's state repo follows every push.
exec git read-tree --reset -u "$1"
HOOK
  chmod 0755 "$hook.new"
  chown "$user:$user" "$hook.new"
  mv "$hook.new" "$hook"
fi
# People in the group $user may push to the repo, which belongs to $user; git asks that such a
# repository be named safe.
if ! git config --system --get-all safe.directory 2>/dev/null | grep -qx "$root/state"; then
  git config --system --add safe.directory "$root/state"
fi

if [ "$game" = yes ]; then
  step "the game, the Steam SDK links and the units (l4d2ctl install)"
  LEFT4ME_STEAMCMD="$steamcmd" /usr/local/bin/l4d2ctl install
  step "the reconciler, the web app and left4me live"
  # Restarted, not only started: an update runs the new binaries at once.
  services=(left4me-reconciler.service left4me-web.service left4me-live.service)
  # An agent of a fleet runs no web app (deploy/add-host.sh masked it): only the control host's
  # may commit, or this host's repo would part from its upstream.
  if [ "$(systemctl is-enabled left4me-web.service 2>/dev/null || true)" = masked ]; then
    services=(left4me-reconciler.service left4me-live.service)
    echo "    left4me-web.service is masked (an agent of a fleet): left alone"
  fi
  systemctl enable --quiet "${services[@]}" left4me-live.socket
  # The log's socket first: systemd holds the port and hands it to left4me live, which must
  # not hold it meanwhile (a socket restarted under it could not bind).
  systemctl stop left4me-live.service
  systemctl restart left4me-live.socket
  systemctl restart "${services[@]}"
fi
step "done"
if [ ! -e "$root/web.db" ]; then
  echo "next: create the first admin (the password is read from stdin), then open http://127.0.0.1:8080/"
  echo "  sudo left4me-web create-user <name> --admin"
fi
