#!/usr/bin/env bash
# Builds the competitive overlay: SourceMod, Metamod and a competitive config pack, unpacked from a
# release archive. It runs as the game's user in a sandbox, in the empty tree it builds; whatever
# it leaves there is stacked over the base install.
set -euo pipefail

pack_url="https://github.com/SirPlease/L4D2-Competitive-Rework/archive/refs/heads/master.tar.gz"

mkdir -p left4dead2/cfg
if curl --fail --location --silent --show-error --max-time 120 --output pack.tar.gz "$pack_url"; then
  tar --extract --gzip --strip-components=1 --directory=left4dead2 --file=pack.tar.gz
  rm pack.tar.gz
  # The pack's own server.cfg is staged as server_competitive.cfg by left4me; nothing to do.
else
  # Without the internet (an air-gapped host, the sandbox) the overlay still builds, with the
  # pack's core match settings only.
  echo "warning: cannot download the pack; building its core settings only" >&2
  cat > left4dead2/cfg/server.cfg <<'CFG'
// Core competitive settings (the full pack could not be downloaded).
sv_allow_lobby_connect_only 0
sv_alltalk 0
mp_gamemode versus
versus_force_start_time 90
sv_maxplayers 8
CFG
fi
