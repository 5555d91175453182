#!/usr/bin/env bash
# Builds the competitive overlay. Runs in a sandbox with the empty overlay tree as its working
# directory; whatever it leaves there is stacked over the base install.
set -euo pipefail

pack_url="https://github.com/SirPlease/L4D2-Competitive-Rework/archive/refs/heads/master.tar.gz"

mkdir -p left4dead2
curl --fail --location --silent --show-error "$pack_url" \
  | tar --extract --gzip --strip-components=1 --directory=left4dead2

# The pack's own server.cfg would replace the blueprint's; keep it as server_competitive.cfg.
if [[ -f left4dead2/cfg/server.cfg ]]; then
  mv left4dead2/cfg/server.cfg left4dead2/cfg/server_competitive.cfg
fi
