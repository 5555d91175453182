//! A2S queries on the UDP game port, per Valve's "Server queries": INFO, PLAYER and RULES, each behind the
//! challenge dance, with replies over 1400 bytes sent in the Source split format.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use crate::console::{Server, State, log};

const WHOLE: [u8; 4] = [0xFF; 4];
const SPLIT: [u8; 4] = [0xFE, 0xFF, 0xFF, 0xFF];
/// A reply longer than this is split.
const MAX_WHOLE: usize = 1400;
/// The payload of one split packet, also sent as the packet's "size" field (Valve's default, 0x04E0).
const SPLIT_SIZE: usize = 1248;

const A2S_INFO: u8 = 0x54;
const A2S_PLAYER: u8 = 0x55;
const A2S_RULES: u8 = 0x56;
const A2S_SERVERQUERY_GETCHALLENGE: u8 = 0x57;
const S2C_CHALLENGE: u8 = 0x41;
const INFO_QUERY: &[u8] = b"Source Engine Query\0";

/// L4D2 reports protocol 17 and the game's app id 550 (not the dedicated server's 222860).
const PROTOCOL: u8 = 17;
const APP_ID: u16 = 550;

pub fn serve(server: &Server, socket: &UdpSocket) {
    let mut challenges = Challenges::new();
    let mut split_id: i32 = 0;
    let mut buf = [0u8; 2048];
    // The moment a start is done, which the journal keeps: whoever times starts reads it there
    // afterwards instead of querying while they happen.
    eprintln!("sim-srcds: answering A2S queries on {}", server.addr);
    loop {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(err) => {
                log(&format!("A2S: receiving on {} failed: {err}", server.addr));
                // A persistent error must not turn this loop into a busy spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(reply) = answer(server, &mut challenges, &buf[..len], from) else {
            continue;
        };
        split_id = split_id.wrapping_add(1) & 0x7FFF_FFFF;
        for packet in frame(&reply, split_id) {
            // A lost reply is what UDP clients expect and retry; there is nobody to tell.
            let _ = socket.send_to(&packet, from);
        }
    }
}

/// The reply to one datagram, or None for garbage (and for everything while a map change is simulated).
fn answer(server: &Server, challenges: &mut Challenges, packet: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let (header, rest) = packet.split_first_chunk::<4>()?;
    if *header != WHOLE {
        return None;
    }
    let (&kind, body) = rest.split_first()?;
    let mut st = server.state();
    if let Some(until) = st.quiet_until {
        if Instant::now() < until {
            return None;
        }
        st.quiet_until = None;
    }
    let given = match kind {
        A2S_INFO => body.strip_prefix(INFO_QUERY)?,
        A2S_PLAYER | A2S_RULES => body,
        A2S_SERVERQUERY_GETCHALLENGE => return Some(challenge_reply(challenges.get(from))),
        _ => return None,
    };
    let expected = challenges.get(from);
    let given = given.first_chunk::<4>().map(|bytes| u32::from_le_bytes(*bytes));
    if given != Some(expected) {
        return Some(challenge_reply(expected));
    }
    Some(match kind {
        A2S_INFO => info_reply(server, &st),
        A2S_PLAYER => player_reply(&st),
        _ => rules_reply(&st),
    })
}

fn challenge_reply(challenge: u32) -> Vec<u8> {
    let mut reply = Packet::new(S2C_CHALLENGE);
    reply.long(challenge);
    reply.0
}

fn info_reply(server: &Server, st: &State) -> Vec<u8> {
    let players = st.a2s_players();
    let max_players = u8::try_from(server.max_players(st)).unwrap_or(u8::MAX);
    let mut keywords = st.cvar("mp_gamemode").filter(|mode| !mode.is_empty()).unwrap_or("coop").to_owned();
    if players == 0 {
        keywords.push_str(",empty");
    }
    let mut reply = Packet::new(0x49);
    reply.byte(PROTOCOL);
    reply.string(st.cvar_or_empty("hostname"));
    reply.string(&st.map);
    reply.string("left4dead2");
    reply.string("Left 4 Dead 2");
    reply.short(APP_ID);
    reply.byte(players);
    reply.byte(max_players);
    reply.byte(0); // bots
    reply.byte(b'd');
    reply.byte(b'l');
    reply.byte(u8::from(!st.cvar_or_empty("sv_password").is_empty()));
    reply.byte(u8::from(!server.insecure));
    reply.string(&server.version);
    // Extra data: port (0x80), keywords (0x20), game id (0x01), written in the order the format fixes.
    reply.byte(0x80 | 0x20 | 0x01);
    reply.short(server.addr.port());
    reply.string(&keywords);
    reply.0.extend_from_slice(&u64::from(APP_ID).to_le_bytes());
    reply.0
}

fn player_reply(st: &State) -> Vec<u8> {
    let seconds = st.players_since.elapsed().as_secs_f32();
    let mut reply = Packet::new(0x44);
    reply.byte(st.a2s_players());
    for index in 0..st.a2s_players() {
        reply.byte(index);
        reply.string(&format!("Player {}", u32::from(index) + 1));
        reply.long(0); // score
        reply.0.extend_from_slice(&seconds.to_le_bytes());
    }
    reply.0
}

fn rules_reply(st: &State) -> Vec<u8> {
    // rcon_password is never public; sv_password is a protected cvar, which srcds reports only as set or not.
    let rules: Vec<(&str, &str)> = st
        .cvars()
        .filter(|(name, _)| *name != "rcon_password")
        .map(|(name, value)| match name {
            "sv_password" => (name, if value.is_empty() { "0" } else { "1" }),
            _ => (name, value),
        })
        .collect();
    let mut reply = Packet::new(0x45);
    reply.short(u16::try_from(rules.len()).unwrap_or(u16::MAX));
    for (name, value) in rules.iter().take(usize::from(u16::MAX)) {
        reply.string(name);
        reply.string(value);
    }
    reply.0
}

/// The datagrams that carry one reply: itself, or its split packets.
fn frame(reply: &[u8], id: i32) -> Vec<Vec<u8>> {
    if reply.len() <= MAX_WHOLE {
        return vec![reply.to_vec()];
    }
    let chunks: Vec<&[u8]> = reply.chunks(SPLIT_SIZE).collect();
    let Ok(total) = u8::try_from(chunks.len()) else {
        log(&format!("A2S: a reply of {} bytes does not fit in 255 split packets; not sent", reply.len()));
        return Vec::new();
    };
    let size = u16::try_from(SPLIT_SIZE).expect("the split size is a short");
    chunks
        .iter()
        .zip(0u8..)
        .map(|(chunk, number)| {
            let mut packet = Vec::with_capacity(12 + chunk.len());
            packet.extend_from_slice(&SPLIT);
            packet.extend_from_slice(&id.to_le_bytes());
            packet.push(total);
            packet.push(number);
            packet.extend_from_slice(&size.to_le_bytes());
            packet.extend_from_slice(chunk);
            packet
        })
        .collect()
}

/// A whole reply being written: the `FF FF FF FF` header, the type byte, then little-endian fields.
struct Packet(Vec<u8>);

impl Packet {
    fn new(kind: u8) -> Self {
        let mut bytes = WHOLE.to_vec();
        bytes.push(kind);
        Packet(bytes)
    }

    fn byte(&mut self, value: u8) {
        self.0.push(value);
    }

    fn short(&mut self, value: u16) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn long(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn string(&mut self, value: &str) {
        // A NUL inside would end the string early for the client; argv and configs cannot carry one anyway.
        self.0.extend(value.bytes().filter(|&b| b != 0));
        self.0.push(0);
    }
}

/// One random challenge per client address.
struct Challenges {
    keys: RandomState,
    issued: u64,
    by_client: HashMap<SocketAddr, u32>,
}

impl Challenges {
    /// Enough for every real client; a flood of spoofed addresses only costs a reset.
    const MAX_CLIENTS: usize = 4096;

    fn new() -> Self {
        Challenges { keys: RandomState::new(), issued: 0, by_client: HashMap::new() }
    }

    fn get(&mut self, client: SocketAddr) -> u32 {
        if let Some(&challenge) = self.by_client.get(&client) {
            return challenge;
        }
        if self.by_client.len() >= Self::MAX_CLIENTS {
            self.by_client.clear();
        }
        let challenge = loop {
            self.issued += 1;
            // RandomState is seeded from the OS's randomness, so the hash of a counter is unpredictable.
            let mut hasher = self.keys.build_hasher();
            hasher.write_u64(self.issued);
            hasher.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos());
            let challenge = hasher.finish() as u32;
            // -1 means "no challenge yet" in requests, so it can never be one.
            if challenge != u32::MAX {
                break challenge;
            }
        };
        self.by_client.insert(client, challenge);
        challenge
    }
}
