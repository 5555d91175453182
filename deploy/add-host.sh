#!/usr/bin/env bash
# Joins a host to a fleet of left4me hosts: one control host holding the state repo and the web
# app, and agents following it (deploy/README.md, "Add a host"). Safe to run again.
#
#   deploy/add-host.sh show --name NAME [--address ADDRESS]
#       On the control host: prints the command to run on the new host NAME, with this host's web
#       key and host key filled in. ADDRESS is how the new host reaches this one (default: this
#       host's first address).
#
#   deploy/add-host.sh agent --name NAME --upstream GIT-URL --control-key KEY
#                            --control-host-key LINE [--address ADDRESS] [--fetch-seconds N]
#                            [install.sh's options: --bin-dir DIR --steamcmd PATH --ports A-B --no-game]
#       On the new host: installs left4me (deploy/install.sh, with its options), names the host
#       NAME (LEFT4ME_HOST, as hosts/NAME.yaml), follows GIT-URL every N seconds (default: as set,
#       else 60), lets the control host's web app in with KEY (forced command `left4me remote`),
#       trusts LINE (`<host> <keytype> <base64>`) as the control host's key, masks the web app
#       (only the control host's may commit) and restarts the reconciler. Prints the command to
#       run on the control host, with this host's agent key and host key (under ADDRESS, as
#       hosts/NAME.yaml's spec.address gives it; default: this host's first address) filled in.
#
#   deploy/add-host.sh control --name NAME --agent-key KEY --host-key LINE
#       On the control host: lets host NAME's agent fetch the state repo with KEY (forced command
#       `left4me remote --agent NAME`: git-upload-pack of the state repo, and the data of a server
#       that moved to NAME, nothing else) and
#       trusts LINE as the new host's key, for the web app's ssh to it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
ssh_dir=/etc/left4me/ssh
host_env=/etc/left4me/host.env
left4me=/usr/local/bin/left4me
user=left4me

fail() { printf 'add-host.sh: %s\n' "$*" >&2; exit 1; }
usage() { printf 'add-host.sh: %s (see --help)\n' "$*" >&2; exit 2; }
step() { printf '==> %s\n' "$*"; }

# The key types sshd takes in authorized_keys and known_hosts.
key_types='ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com'
base64_re='[A-Za-z0-9+/]+={0,3}'

# Whether ssh-keygen reads "<type> <base64>" as a public key (a made-up base64 is refused).
parses_as_key() {
  command -v ssh-keygen >/dev/null || return 0
  ssh-keygen -l -f /dev/stdin <<<"$1" >/dev/null 2>&1
}

# One public key line: "<type> <base64> [comment]", no options (a `command=` or `from=` before the
# type is refused: this script writes the options), no second line. Prints it as written.
check_key() { # <option> <value>
  local re="^($key_types) ($base64_re)( [A-Za-z0-9@._:+=/ -]{1,200})?$"
  [[ "$2" =~ $re ]] || fail "$1: not one SSH public key line (\"ssh-ed25519 AAAA… comment\", starting with its type, no options, one line): ${2:0:80}"
  parses_as_key "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}" || fail "$1: ssh-keygen cannot read it as a public key: ${2:0:80}"
}

# One known_hosts line: "<host> <type> <base64>" (host: a name, an address, [name]:port, or a
# comma-separated list of them; no @marker, no hashed name).
check_known_host() { # <option> <value>
  local re="^[][A-Za-z0-9_.:,-]+ ($key_types) ($base64_re)$"
  [[ "$2" =~ $re ]] && [[ "$2" != -* ]] \
    || fail "$1: not one known_hosts line (\"<host> <keytype> <base64>\", e.g. \"10.77.5.1 ssh-ed25519 AAAA…\"; ssh-keyscan prints them): ${2:0:80}"
  local fields
  read -r -a fields <<<"$2"
  parses_as_key "${fields[1]} ${fields[2]}" || fail "$1: ssh-keygen cannot read its key: ${2:0:80}"
}

check_name() { # <value>
  [[ "$1" =~ ^[a-z0-9][a-z0-9_-]{0,63}$ ]] \
    || fail "--name $1: a host's name is 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit (as hosts/<name>.yaml)"
}

check_address() { # <value>
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9.:-]*$ ]] && [ ${#1} -le 253 ] \
    || fail "--address $1: not a DNS name or IP address"
}

# The host of an ssh git URL, as known_hosts names it: user@host:path, ssh://[user@]host[:port]/path.
url_host() { # <url>
  local url=$1
  if [[ "$url" =~ ^ssh://([^@/]+@)?(\[[^]]+\]|[^:/]+)(:([0-9]+))?/ ]]; then
    local host=${BASH_REMATCH[2]#[} port=${BASH_REMATCH[4]}
    host=${host%]}
    if [ -n "$port" ] && [ "$port" != 22 ]; then echo "[$host]:$port"; else echo "$host"; fi
  elif [[ "$url" != *://* ]] && [[ "$url" =~ ^([^@/:]+@)?(\[[^]]+\]|[^:/@]+): ]]; then
    local host=${BASH_REMATCH[2]#[}
    echo "${host%]}"
  fi
}

check_upstream() { # <url>
  local re='^[][A-Za-z0-9@%._~+:/=-]+$'
  [[ "$1" =~ $re ]] && [[ "$1" != -* ]] \
    || fail "--upstream $1: not a git URL (e.g. left4me@10.77.5.1:/var/lib/left4me/state)"
}

# Replaces $1 whole with stdin, owned $2:$3, mode $4 (written beside it, then renamed over it).
write_file() { # <path> <owner> <group> <mode>
  local new="$1.new.$$"
  cat > "$new"
  chown "$2:$3" "$new"
  chmod "$4" "$new"
  mv -f "$new" "$1"
}

# Sets KEY=VALUE in host.env, replacing the earlier lines of KEY; the rest stays as it is.
set_env() { # <key> <value>
  { grep -v "^$1=" "$host_env" || true; printf '%s=%s\n' "$1" "$2"; } | write_file "$host_env" root root 0644
}

env_value() { # <key>: its value in host.env, empty when unset
  sed -n "s/^$1=//p" "$host_env" | tail -n 1
}

# Authorises KEY to log in as $user with the forced command COMMAND, replacing an earlier line of
# the same key (whatever its options were).
authorize() { # <command> <key>
  local type b64 rest
  read -r type b64 rest <<<"$2"
  { awk -v type="$type" -v b64="$b64" '{ for (i = 1; i < NF; i++) if ($i == type && $(i + 1) == b64) next; print }' \
      "$ssh_dir/authorized_keys"
    printf 'command="%s",restrict %s\n' "$1" "$2"
  } | write_file "$ssh_dir/authorized_keys" root root 0644
}

# Trusts LINE's key for its host, replacing the earlier lines of that host.
know_host() { # <line>
  local host
  host=${1%% *}
  { awk -v host="$host" '$1 != host' "$ssh_dir/known_hosts"; printf '%s\n' "$1"; } \
    | write_file "$ssh_dir/known_hosts" root "$user" 0640
}

# This host's own ssh host key, "<type> <base64>" (ed25519 first).
own_host_key() {
  local file
  for file in /etc/ssh/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ecdsa_key.pub /etc/ssh/ssh_host_rsa_key.pub; do
    if [ -r "$file" ]; then
      awk '{ print $1, $2; exit }' "$file"
      return
    fi
  done
  fail "this host has no ssh host key in /etc/ssh (is openssh-server installed? apt-get install openssh-server)"
}

own_address() {
  local address
  address=$(hostname -I 2>/dev/null | awk '{ print $1 }')
  [ -n "$address" ] || fail "this host has no address (hostname -I): pass --address"
  echo "$address"
}

# A word for a shell command line, in single quotes (what it quotes holds none: checked above).
quote() { printf "'%s'" "$1"; }

need_installed() {
  [ -x "$left4me" ] && [ -d "$ssh_dir" ] && [ -f "$host_env" ] \
    || fail "left4me is not installed here ($left4me, $ssh_dir, $host_env): run deploy/install.sh first"
}

show() {
  local name="" address=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --name) name=${2-}; shift 2 || usage "--name needs a value" ;;
      --address) address=${2-}; shift 2 || usage "--address needs a value" ;;
      *) usage "show: unknown option $1" ;;
    esac
  done
  [ -n "$name" ] || usage "show needs --name NAME, the new host's name (hosts/NAME.yaml)"
  check_name "$name"
  need_installed
  [ -n "$address" ] || address=$(own_address)
  check_address "$address"
  [ -f "$ssh_dir/web.pub" ] || fail "$ssh_dir/web.pub is missing: install openssh-client and run deploy/install.sh again"
  local root
  root=$(env_value LEFT4ME_ROOT)
  echo "On the new host $name, as root in a checkout of left4me (add install.sh's options as needed):"
  echo "  deploy/add-host.sh agent --name $(quote "$name") --upstream $(quote "$user@$address:${root:-/var/lib/left4me}/state")" \
    "--control-key $(quote "$(cat "$ssh_dir/web.pub")") --control-host-key $(quote "$address $(own_host_key)")"
}

agent() {
  local name="" upstream="" control_key="" control_host_key="" address="" fetch_seconds=""
  local install=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --name) name=${2-}; shift 2 || usage "--name needs a value" ;;
      --upstream) upstream=${2-}; shift 2 || usage "--upstream needs a value" ;;
      --control-key) control_key=${2-}; shift 2 || usage "--control-key needs a value" ;;
      --control-host-key) control_host_key=${2-}; shift 2 || usage "--control-host-key needs a value" ;;
      --address) address=${2-}; shift 2 || usage "--address needs a value" ;;
      --fetch-seconds) fetch_seconds=${2-}; shift 2 || usage "--fetch-seconds needs a value" ;;
      --bin-dir|--steamcmd|--ports) [ $# -ge 2 ] || usage "$1 needs a value"; install+=("$1" "$2"); shift 2 ;;
      --no-game) install+=("$1"); shift ;;
      *) usage "agent: unknown option $1" ;;
    esac
  done
  local missing=()
  for option in name upstream control_key control_host_key; do
    [ -n "${!option}" ] || missing+=("--${option//_/-}")
  done
  [ ${#missing[@]} -eq 0 ] || usage "agent needs ${missing[*]} (the control host's \`deploy/add-host.sh show --name NAME\` prints them)"
  check_name "$name"
  check_upstream "$upstream"
  check_key --control-key "$control_key"
  check_known_host --control-host-key "$control_host_key"
  [ -z "$address" ] || check_address "$address"
  [ -z "$fetch_seconds" ] || [[ "$fetch_seconds" =~ ^[1-9][0-9]{0,5}$ ]] \
    || fail "--fetch-seconds $fetch_seconds: a whole number of seconds, 1 or more"
  local host
  host=$(url_host "$upstream")
  if [ -n "$host" ] && ! [[ ",${control_host_key%% *}," == *",$host,"* ]]; then
    fail "--control-host-key names ${control_host_key%% *}, but --upstream reaches $host: ssh would not know its key; give the line for $host"
  fi
  [ "$(id -u)" -eq 0 ] || fail "run it as root (sudo deploy/add-host.sh agent …)"

  step "left4me (deploy/install.sh ${install[*]})"
  "$here/install.sh" "${install[@]}"
  [ -f "$ssh_dir/agent.pub" ] || fail "$ssh_dir/agent.pub is missing: install openssh-client and run this again"

  step "host.env: LEFT4ME_HOST=$name, LEFT4ME_UPSTREAM=$upstream"
  set_env LEFT4ME_HOST "$name"
  set_env LEFT4ME_UPSTREAM "$upstream"
  if [ -n "$fetch_seconds" ]; then
    set_env LEFT4ME_FETCH_SECONDS "$fetch_seconds"
  elif [ -z "$(env_value LEFT4ME_FETCH_SECONDS)" ]; then
    set_env LEFT4ME_FETCH_SECONDS 60
  fi

  step "the control host's web app may ask this host (left4me remote)"
  authorize "$left4me remote" "$control_key"
  know_host "$control_host_key"

  step "the web app: masked (only the control host's commits to the state repo)"
  # A second web app would commit here, and this host's repo would part from its upstream. Masked,
  # not only disabled: install.sh, run again for an update, leaves a masked web app alone.
  systemctl disable --quiet left4me-web.service 2>/dev/null || true
  if ! systemctl mask --now --quiet left4me-web.service; then
    # A unit file of that name in /etc/systemd/system cannot be masked over.
    systemctl disable --now --quiet left4me-web.service 2>/dev/null || true
    echo "    left4me-web.service could not be masked, only disabled: install.sh run again would enable it; disable it again then"
  fi

  if systemctl cat left4me-reconciler.service >/dev/null 2>&1; then
    step "the reconciler, restarted with the new host.env"
    systemctl restart left4me-reconciler.service
  else
    echo "    no left4me-reconciler.service yet (--no-game): \`sudo l4d2ctl install\`, then \`sudo systemctl enable --now left4me-reconciler\`"
  fi

  [ -n "$address" ] || address=$(own_address)
  step "done. On the control host, as root in a checkout of left4me:"
  echo "  deploy/add-host.sh control --name $(quote "$name") --agent-key $(quote "$(cat "$ssh_dir/agent.pub")") --host-key $(quote "$address $(own_host_key)")"
  echo "The address ($address) must be hosts/$name.yaml's spec.address: pass --address otherwise. Then check here: sudo left4me status"
}

control() {
  local name="" agent_key="" host_key=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --agent-key) agent_key=${2-}; shift 2 || usage "--agent-key needs a value" ;;
      --host-key) host_key=${2-}; shift 2 || usage "--host-key needs a value" ;;
      --name) name=${2-}; shift 2 || usage "--name needs a value" ;;
      *) usage "control: unknown option $1" ;;
    esac
  done
  [ -n "$name" ] && [ -n "$agent_key" ] && [ -n "$host_key" ] \
    || usage "control needs --name, --agent-key and --host-key (the new host's \`deploy/add-host.sh agent\` prints them)"
  check_name "$name"
  check_key --agent-key "$agent_key"
  check_known_host --host-key "$host_key"
  [ "$(id -u)" -eq 0 ] || fail "run it as root (sudo deploy/add-host.sh control …)"
  need_installed

  step "host $name's agent may fetch the state repo (left4me remote --agent $name)"
  authorize "$left4me remote --agent $name" "$agent_key"
  step "the web app knows ${host_key%% *} by its key"
  know_host "$host_key"
  if [ -z "$(env_value LEFT4ME_HOST)" ]; then
    echo "    note: $host_env names no LEFT4ME_HOST: set this host's name (hosts/<name>.yaml) and restart left4me-reconciler and left4me-web"
  fi
  step "done. Check: sudo -u $user ssh -i $ssh_dir/web -o UserKnownHostsFile=$ssh_dir/known_hosts -o StrictHostKeyChecking=yes $user@${host_key%% *} status"
}

case "${1:-}" in
  show) shift; show "$@" ;;
  agent) shift; agent "$@" ;;
  control) shift; control "$@" ;;
  -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
  '') usage "name a mode: show, agent or control" ;;
  *) usage "unknown mode $1; the modes are show, agent and control" ;;
esac
