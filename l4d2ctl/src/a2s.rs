//! A2S_INFO client (Valve's "Server queries"): how l4d2ctl sees whether a game server answers, and what it
//! reports (map, players, slots).
//!
//! Every query, one server or many, runs through the same loop on one UDP socket: send every request, then
//! receive until each server has answered or the deadline passes, doing the challenge dance and reassembling
//! split replies per address. A server that stays silent is a normal outcome (map changes make healthy servers
//! silent for up to a minute), so it is reported as `Timeout`, or simply left out by [`query_info_many`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// What a server says about itself in its A2S_INFO reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub protocol: u8,
    pub name: String,
    pub map: String,
    pub folder: String,
    pub game: String,
    /// The game's app id (550 for L4D2), not the dedicated server's.
    pub app_id: u16,
    pub players: u8,
    pub max_players: u8,
    pub bots: u8,
    /// `d` dedicated, `l` listen, `p` SourceTV relay.
    pub server_type: char,
    /// `l` Linux, `w` Windows, `m`/`o` macOS.
    pub environment: char,
    /// 1 when the server has a password.
    pub visibility: u8,
    /// 1 when VAC secured.
    pub vac: u8,
    pub version: String,
    /// The optional fields after the extra-data flag, present when the server sets their flag bit.
    pub port: Option<u16>,
    pub keywords: Option<String>,
    pub game_id: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum A2sError {
    #[error("A2S query to {addr}: no answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("A2S query to {addr}: {cause}")]
    Io { addr: SocketAddr, cause: io::Error },
    /// A reply that is not a well-formed A2S_INFO answer. `addr` is None only from [`parse_info`], which does
    /// not know where the bytes came from.
    #[error("A2S query{}: malformed reply: {reason}", from_addr(.addr))]
    Malformed { addr: Option<SocketAddr>, reason: String },
}

/// Queries one server. Servers on an IPv6 address are queried from an IPv6 socket.
pub fn query_info(addr: SocketAddr, timeout: Duration) -> Result<Info, A2sError> {
    match query_all(&[addr], timeout).remove(&addr) {
        Some(result) => result,
        // The loop reports every target it was given; this only guards against that promise breaking.
        None => Err(A2sError::Timeout { addr, timeout }),
    }
}

/// Queries many servers at once from ONE UDP socket (no thread per server): send every request, then loop
/// receiving until all answered or the deadline passes, doing the challenge dance per address and
/// reassembling Source split replies. Servers that do not answer in time (or answer garbage) are simply
/// absent.
///
/// IPv4 and IPv6 targets need sockets of their own family; when both are given, the IPv6 ones are queried
/// on a second socket in one extra thread, under the same deadline.
pub fn query_info_many(targets: &[SocketAddr], timeout: Duration) -> HashMap<SocketAddr, Info> {
    query_all(targets, timeout).into_iter().filter_map(|(addr, result)| Some((addr, result.ok()?))).collect()
}

/// Parses an A2S_INFO reply: the payload after the `FF FF FF FF` header, starting with the type byte 0x49.
/// Never panics: every read is bounds-checked, and text that is not UTF-8 is decoded lossily (hostnames are
/// whatever bytes the admin typed).
pub fn parse_info(payload: &[u8]) -> Result<Info, A2sError> {
    parse(payload).map_err(|reason| A2sError::Malformed { addr: None, reason })
}

fn from_addr(addr: &Option<SocketAddr>) -> String {
    addr.map(|addr| format!(" to {addr}")).unwrap_or_default()
}

const WHOLE: [u8; 4] = [0xFF; 4];
const SPLIT: [u8; 4] = [0xFE, 0xFF, 0xFF, 0xFF];
const INFO_REQUEST: &[u8] = b"\xFF\xFF\xFF\xFFTSource Engine Query\0";
const S2C_CHALLENGE: u8 = 0x41;
const S2A_INFO: u8 = 0x49;

/// A server that keeps asking for new challenges is broken or hostile; real ones ask once.
const MAX_CHALLENGES: u32 = 5;
/// UDP may lose a request or its reply; one that has heard nothing back by then is sent again.
const RESEND_AFTER: Duration = Duration::from_millis(500);
/// Split replies being reassembled per server at once. Only resends make more than one, so a server that
/// sends chunks of ever new ids just has its partial ones dropped.
const MAX_ASSEMBLIES: usize = 4;
/// Larger than any UDP datagram, so that nothing arrives truncated.
const RECV_BUFFER: usize = 65_536;

fn query_all(targets: &[SocketAddr], timeout: Duration) -> HashMap<SocketAddr, Result<Info, A2sError>> {
    let (v4, v6): (Vec<SocketAddr>, Vec<SocketAddr>) = targets.iter().partition(|addr| addr.is_ipv4());
    if v6.is_empty() {
        return query_family(&v4, timeout);
    }
    if v4.is_empty() {
        return query_family(&v6, timeout);
    }
    std::thread::scope(|scope| {
        let v6_results = scope.spawn(|| query_family(&v6, timeout));
        let mut results = query_family(&v4, timeout);
        match v6_results.join() {
            Ok(v6_results) => results.extend(v6_results),
            Err(panic) => std::panic::resume_unwind(panic),
        }
        results
    })
}

/// The query loop for targets of one address family.
fn query_family(targets: &[SocketAddr], timeout: Duration) -> HashMap<SocketAddr, Result<Info, A2sError>> {
    let deadline = Instant::now() + timeout;
    let mut results = HashMap::new();
    let Some(first) = targets.first() else {
        return results;
    };
    let bind: SocketAddr = if first.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = match UdpSocket::bind(bind) {
        Ok(socket) => socket,
        Err(err) => {
            for &addr in targets {
                let cause = io::Error::new(err.kind(), format!("cannot bind a UDP socket on {bind}: {err}"));
                results.insert(addr, Err(A2sError::Io { addr, cause }));
            }
            return results;
        }
    };

    // Replies are matched by IP and port only: an IPv6 source address may differ in flow info from the target.
    let mut pending: HashMap<(IpAddr, u16), Query> = HashMap::new();
    for &addr in targets {
        pending.entry((addr.ip(), addr.port())).or_insert_with(|| Query::new(addr));
    }
    for query in pending.values_mut() {
        if let Err(err) = query.send(&socket) {
            results.insert(query.addr, Err(err));
        }
    }
    pending.retain(|_, query| !results.contains_key(&query.addr));

    let mut buf = vec![0u8; RECV_BUFFER];
    while !pending.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        for query in pending.values_mut() {
            if !query.heard && now.duration_since(query.sent_at) >= RESEND_AFTER {
                if let Err(err) = query.send(&socket) {
                    results.insert(query.addr, Err(err));
                }
            }
        }
        pending.retain(|_, query| !results.contains_key(&query.addr));
        // Wake up for the next resend even when nothing arrives.
        let next_resend = pending.values().filter(|query| !query.heard).map(|query| query.sent_at + RESEND_AFTER).min();
        let wake = next_resend.map_or(deadline, |at| at.min(deadline));
        let wait = wake.saturating_duration_since(now).max(Duration::from_millis(1));
        if let Err(err) = socket.set_read_timeout(Some(wait)) {
            fail_all(&mut pending, &mut results, &err, "cannot set a read timeout");
            break;
        }
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(err) => match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => continue,
                // Some systems report an ICMP "port unreachable" for an earlier send here, without saying
                // which target it was for; that target then just stays silent.
                io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => continue,
                _ => {
                    fail_all(&mut pending, &mut results, &err, "receiving failed");
                    break;
                }
            },
        };
        // Replies from addresses not queried are ignored.
        let Some(query) = pending.get_mut(&(from.ip(), from.port())) else {
            continue;
        };
        query.heard = true;
        let datagram = buf.get(..len).unwrap_or_default();
        match query.receive(datagram, &socket) {
            Ok(None) => {}
            Ok(Some(info)) => {
                results.insert(query.addr, Ok(info));
            }
            Err(err) => {
                results.insert(query.addr, Err(err));
            }
        }
        pending.retain(|_, query| !results.contains_key(&query.addr));
    }
    for query in pending.into_values() {
        results.insert(query.addr, Err(A2sError::Timeout { addr: query.addr, timeout }));
    }
    results
}

fn fail_all(
    pending: &mut HashMap<(IpAddr, u16), Query>,
    results: &mut HashMap<SocketAddr, Result<Info, A2sError>>,
    err: &io::Error,
    what: &str,
) {
    for (_, query) in pending.drain() {
        let cause = io::Error::new(err.kind(), format!("{what}: {err}"));
        results.insert(query.addr, Err(A2sError::Io { addr: query.addr, cause }));
    }
}

/// The state of the query to one server.
struct Query {
    addr: SocketAddr,
    /// The request as it is sent now: with the last challenge appended once the server asked for one.
    request: Vec<u8>,
    challenge: Option<[u8; 4]>,
    challenges: u32,
    sent_at: Instant,
    /// Whether anything came back since the last send; only silent servers get the request again.
    heard: bool,
    assemblies: HashMap<u32, Assembly>,
}

impl Query {
    fn new(addr: SocketAddr) -> Self {
        Query {
            addr,
            request: INFO_REQUEST.to_vec(),
            challenge: None,
            challenges: 0,
            sent_at: Instant::now(),
            heard: false,
            assemblies: HashMap::new(),
        }
    }

    fn send(&mut self, socket: &UdpSocket) -> Result<(), A2sError> {
        self.sent_at = Instant::now();
        self.heard = false;
        match socket.send_to(&self.request, self.addr) {
            Ok(_) => Ok(()),
            Err(err) => {
                let cause = io::Error::new(err.kind(), format!("sending the request failed: {err}"));
                Err(A2sError::Io { addr: self.addr, cause })
            }
        }
    }

    /// Takes one datagram from the server: the Info once the reply is complete, None while more is expected.
    fn receive(&mut self, datagram: &[u8], socket: &UdpSocket) -> Result<Option<Info>, A2sError> {
        let addr = self.addr;
        let malformed = move |reason: String| A2sError::Malformed { addr: Some(addr), reason };
        let Some((header, rest)) = datagram.split_first_chunk::<4>() else {
            return Err(malformed(format!("a datagram of {} bytes, shorter than a header", datagram.len())));
        };
        let payload = match *header {
            WHOLE => rest.to_vec(),
            SPLIT => {
                let chunk = Chunk::parse(rest).map_err(malformed)?;
                if self.assemblies.len() >= MAX_ASSEMBLIES && !self.assemblies.contains_key(&chunk.id) {
                    self.assemblies.clear();
                }
                let assembly = self.assemblies.entry(chunk.id).or_insert_with(|| Assembly::new(chunk.total));
                match assembly.add(chunk).map_err(malformed)? {
                    Some(whole) => {
                        self.assemblies.clear();
                        match whole.strip_prefix(&WHOLE) {
                            Some(payload) => payload.to_vec(),
                            None => return Err(malformed("a reassembled split reply without FF FF FF FF".into())),
                        }
                    }
                    None => return Ok(None),
                }
            }
            _ => return Err(malformed(format!("unknown header {header:02X?}"))),
        };
        match payload.first() {
            Some(&S2C_CHALLENGE) => {
                let Some(challenge) = payload.get(1..5).and_then(|bytes| <[u8; 4]>::try_from(bytes).ok()) else {
                    return Err(malformed(format!("a challenge of {} bytes, expected 4", payload.len() - 1)));
                };
                // The same challenge again answers a resent request; the request with it is already out.
                if self.challenge == Some(challenge) {
                    return Ok(None);
                }
                self.challenges += 1;
                if self.challenges > MAX_CHALLENGES {
                    return Err(malformed(format!("still asking for a challenge after {MAX_CHALLENGES} rounds")));
                }
                self.challenge = Some(challenge);
                self.request.truncate(INFO_REQUEST.len());
                self.request.extend_from_slice(&challenge);
                self.send(socket)?;
                Ok(None)
            }
            Some(&S2A_INFO) => parse(&payload).map(Some).map_err(malformed),
            Some(other) => Err(malformed(format!("unexpected reply type {other:#04X}"))),
            None => Err(malformed("an empty reply".into())),
        }
    }
}

/// One datagram of a split reply, after its `FE FF FF FF`.
struct Chunk<'a> {
    id: u32,
    total: u8,
    number: u8,
    data: &'a [u8],
}

impl<'a> Chunk<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let id = r.u32("split id")?;
        let total = r.u8("split total")?;
        let number = r.u8("split number")?;
        // The size field is the sender's maximum chunk size, not this chunk's; the datagram's length is what
        // counts.
        r.u16("split size")?;
        if id & 0x8000_0000 != 0 {
            return Err(format!("split reply {id:#010X} is compressed, which Source servers never send"));
        }
        if number >= total {
            return Err(format!("split packet number {number} of a reply in {total} packets"));
        }
        Ok(Chunk { id, total, number, data: r.rest() })
    }
}

/// A split reply being put together; chunks may arrive in any order, and twice.
struct Assembly {
    chunks: Vec<Option<Vec<u8>>>,
}

impl Assembly {
    fn new(total: u8) -> Self {
        Assembly { chunks: vec![None; usize::from(total)] }
    }

    /// The whole reply once every chunk is in.
    fn add(&mut self, chunk: Chunk<'_>) -> Result<Option<Vec<u8>>, String> {
        if usize::from(chunk.total) != self.chunks.len() {
            return Err(format!(
                "split reply {:#X} said {} packets, then {}",
                chunk.id,
                self.chunks.len(),
                chunk.total
            ));
        }
        let Some(slot) = self.chunks.get_mut(usize::from(chunk.number)) else {
            return Err(format!("split packet number {} of a reply in {} packets", chunk.number, chunk.total));
        };
        *slot = Some(chunk.data.to_vec());
        if self.chunks.iter().any(Option::is_none) {
            return Ok(None);
        }
        Ok(Some(self.chunks.iter().flatten().flatten().copied().collect()))
    }
}

/// Extra-data flag bits, in the order their fields follow the flag.
const EDF_PORT: u8 = 0x80;
const EDF_STEAM_ID: u8 = 0x10;
const EDF_SOURCE_TV: u8 = 0x40;
const EDF_KEYWORDS: u8 = 0x20;
const EDF_GAME_ID: u8 = 0x01;

fn parse(payload: &[u8]) -> Result<Info, String> {
    let mut r = Reader::new(payload);
    let kind = r.u8("reply type")?;
    if kind != S2A_INFO {
        return Err(format!("reply type {kind:#04X}, expected A2S_INFO's {S2A_INFO:#04X}"));
    }
    let mut info = Info {
        protocol: r.u8("protocol")?,
        name: r.string("name")?,
        map: r.string("map")?,
        folder: r.string("folder")?,
        game: r.string("game")?,
        app_id: r.u16("app id")?,
        players: r.u8("players")?,
        max_players: r.u8("max players")?,
        bots: r.u8("bots")?,
        server_type: char::from(r.u8("server type")?),
        environment: char::from(r.u8("environment")?),
        visibility: r.u8("visibility")?,
        vac: r.u8("VAC")?,
        version: r.string("version")?,
        port: None,
        keywords: None,
        game_id: None,
    };
    // The extra-data flag and its fields are optional: a reply may end after the version.
    if r.is_empty() {
        return Ok(info);
    }
    let flags = r.u8("extra data flag")?;
    if flags & EDF_PORT != 0 {
        info.port = Some(r.u16("port")?);
    }
    if flags & EDF_STEAM_ID != 0 {
        r.u64("steam id")?;
    }
    if flags & EDF_SOURCE_TV != 0 {
        r.u16("SourceTV port")?;
        r.string("SourceTV name")?;
    }
    if flags & EDF_KEYWORDS != 0 {
        info.keywords = Some(r.string("keywords")?);
    }
    if flags & EDF_GAME_ID != 0 {
        info.game_id = Some(r.u64("game id")?);
    }
    Ok(info)
}

/// Little-endian reads that fail with what was being read instead of running past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        match self.rest().first_chunk::<N>() {
            Some(bytes) => {
                self.pos += N;
                Ok(*bytes)
            }
            None => Err(format!("truncated at byte {} reading the {what} ({N} bytes)", self.pos)),
        }
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        self.take::<1>(what).map(|[byte]| byte)
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        self.take(what).map(u16::from_le_bytes)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.take(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.take(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let rest = self.rest();
        let Some(end) = rest.iter().position(|&byte| byte == 0) else {
            return Err(format!("truncated at byte {} reading the {what}: no terminating NUL", self.pos));
        };
        self.pos += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 0x49 reply as L4D2 sends it, with every extra-data field (steam id and SourceTV too, which left4me's
    /// servers do not send but parsing must step over).
    fn full_reply() -> Vec<u8> {
        let mut reply = vec![0x49, 17];
        for text in ["left4me coop #1", "c1m1_hotel", "left4dead2", "Left 4 Dead 2"] {
            reply.extend_from_slice(text.as_bytes());
            reply.push(0);
        }
        reply.extend_from_slice(&550u16.to_le_bytes());
        reply.extend_from_slice(&[3, 8, 1, b'd', b'l', 0, 1]);
        reply.extend_from_slice(b"2.2.4.3\0");
        reply.push(EDF_PORT | EDF_STEAM_ID | EDF_SOURCE_TV | EDF_KEYWORDS | EDF_GAME_ID);
        reply.extend_from_slice(&27016u16.to_le_bytes());
        reply.extend_from_slice(&90_000_000_000_000_001u64.to_le_bytes());
        reply.extend_from_slice(&27020u16.to_le_bytes());
        reply.extend_from_slice(b"left4me tv\0");
        reply.extend_from_slice(b"coop,empty\0");
        reply.extend_from_slice(&550u64.to_le_bytes());
        reply
    }

    #[test]
    fn parses_a_reply_with_all_extra_data() {
        let info = parse_info(&full_reply()).expect("the hand-built reply is valid");
        assert_eq!(
            info,
            Info {
                protocol: 17,
                name: "left4me coop #1".into(),
                map: "c1m1_hotel".into(),
                folder: "left4dead2".into(),
                game: "Left 4 Dead 2".into(),
                app_id: 550,
                players: 3,
                max_players: 8,
                bots: 1,
                server_type: 'd',
                environment: 'l',
                visibility: 0,
                vac: 1,
                version: "2.2.4.3".into(),
                port: Some(27016),
                keywords: Some("coop,empty".into()),
                game_id: Some(550),
            }
        );
    }

    #[test]
    fn a_reply_may_end_after_the_version() {
        let reply = full_reply();
        let version_end = reply.windows(8).position(|w| w == b"2.2.4.3\0").expect("the version is in the reply") + 8;
        let info = parse_info(&reply[..version_end]).expect("extra data is optional");
        assert_eq!((info.port, info.keywords, info.game_id), (None, None, None));
    }

    #[test]
    fn every_truncation_is_malformed_and_never_panics() {
        let reply = full_reply();
        let version_end = reply.windows(8).position(|w| w == b"2.2.4.3\0").expect("the version is in the reply") + 8;
        for len in 0..reply.len() {
            let result = parse_info(&reply[..len]);
            if len == version_end {
                assert!(result.is_ok(), "a reply ending after the version is complete");
                continue;
            }
            match result {
                Err(A2sError::Malformed { addr: None, reason }) => assert!(!reason.is_empty()),
                other => panic!("a reply cut at {len} of {} bytes gave {other:?}", reply.len()),
            }
        }
    }

    /// Arbitrary bytes, and a valid reply with any one byte changed, never make the parsers panic.
    #[test]
    fn hostile_bytes_never_panic() {
        // xorshift: deterministic, so a failure reproduces, and no dependency for randomness.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = usize::try_from(next() % 96).expect("a small number");
            let mut bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
            if let Some(first) = bytes.first_mut() {
                *first = S2A_INFO;
            }
            let _ = parse_info(&bytes);
            let _ = Chunk::parse(&bytes);
        }
        let reply = full_reply();
        for at in 0..reply.len() {
            for value in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                let mut changed = reply.clone();
                changed[at] = value;
                let _ = parse_info(&changed);
            }
        }
    }

    #[test]
    fn wrong_reply_types_are_malformed() {
        let mut reply = full_reply();
        reply[0] = 0x6D; // the GoldSrc reply
        assert!(matches!(parse_info(&reply), Err(A2sError::Malformed { .. })));
    }

    fn split_packet(id: u32, total: u8, number: u8, data: &[u8]) -> Vec<u8> {
        let mut packet = id.to_le_bytes().to_vec();
        packet.extend_from_slice(&[total, number]);
        packet.extend_from_slice(&1248u16.to_le_bytes());
        packet.extend_from_slice(data);
        packet
    }

    #[test]
    fn split_replies_are_reassembled_out_of_order() {
        let mut whole = WHOLE.to_vec();
        whole.extend_from_slice(&full_reply());
        let parts: Vec<&[u8]> = whole.chunks(20).collect();
        let total = u8::try_from(parts.len()).expect("a short reply splits into few parts");
        assert!(total >= 3, "the test needs several chunks");
        let packets: Vec<Vec<u8>> =
            parts.iter().zip(0u8..).map(|(data, number)| split_packet(7, total, number, data)).collect();

        let mut assembly = Assembly::new(total);
        // Last first, then the rest backwards, with one duplicate along the way.
        let mut order: Vec<usize> = (0..packets.len()).rev().collect();
        order.insert(2, packets.len() - 1);
        let mut result = None;
        for (step, &index) in order.iter().enumerate() {
            let chunk = Chunk::parse(&packets[index]).expect("a valid split packet");
            result = assembly.add(chunk).expect("chunks of one reply fit together");
            assert_eq!(result.is_some(), step == order.len() - 1, "complete only after the last chunk");
        }
        assert_eq!(result.expect("the reply is complete"), whole);
    }

    /// The receive path of one query, fed datagrams by hand: `server` only stands at the server's address to
    /// record what the client sends back.
    #[test]
    fn a_query_answers_challenges_and_reassembles_split_replies() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("binding a loopback socket");
        server.set_read_timeout(Some(Duration::from_secs(5))).expect("setting a read timeout");
        let client = UdpSocket::bind("127.0.0.1:0").expect("binding a loopback socket");
        let mut query = Query::new(server.local_addr().expect("a bound socket has an address"));
        let mut buf = [0u8; 128];

        let challenge = [WHOLE.as_slice(), &[S2C_CHALLENGE, 1, 2, 3, 4]].concat();
        assert_eq!(query.receive(&challenge, &client).expect("a challenge is fine"), None);
        let len = server.recv(&mut buf).expect("the request is resent with the challenge");
        assert_eq!(&buf[..len], [INFO_REQUEST, &[1, 2, 3, 4]].concat());
        // The same challenge again answers a resent request and sends nothing new.
        assert_eq!(query.receive(&challenge, &client).expect("a repeated challenge is fine"), None);

        let whole = [WHOLE.as_slice(), &full_reply()].concat();
        let parts: Vec<&[u8]> = whole.chunks(40).collect();
        let total = u8::try_from(parts.len()).expect("a short reply splits into few parts");
        let mut packets: Vec<Vec<u8>> = parts
            .iter()
            .zip(0u8..)
            .map(|(data, number)| [SPLIT.as_slice(), &split_packet(9, total, number, data)].concat())
            .collect();
        packets.rotate_left(1);
        let (last, rest) = packets.split_last().expect("several packets");
        for packet in rest {
            assert_eq!(query.receive(packet, &client).expect("a split packet is fine"), None);
        }
        let info = query.receive(last, &client).expect("the last packet completes the reply");
        assert_eq!(info, Some(parse_info(&full_reply()).expect("the hand-built reply is valid")));

        // A server that never stops asking for challenges is given up on.
        let mut query = Query::new(server.local_addr().expect("a bound socket has an address"));
        let mut result = Ok(None);
        for round in 0..=MAX_CHALLENGES {
            let challenge = [WHOLE.as_slice(), &[S2C_CHALLENGE], &(round + 10).to_le_bytes()].concat();
            result = query.receive(&challenge, &client);
        }
        assert!(matches!(result, Err(A2sError::Malformed { addr: Some(_), .. })), "{result:?}");
    }

    #[test]
    fn bad_split_packets_are_refused() {
        assert!(Chunk::parse(&split_packet(0x8000_0001, 2, 0, b"x")).is_err(), "compressed");
        assert!(Chunk::parse(&split_packet(1, 2, 2, b"x")).is_err(), "number beyond total");
        assert!(Chunk::parse(&split_packet(1, 0, 0, b"x")).is_err(), "no packets at all");
        for len in 0..8 {
            assert!(Chunk::parse(&split_packet(1, 2, 0, b"")[..len]).is_err(), "a header cut at {len}");
        }
        let mut assembly = Assembly::new(2);
        let first = split_packet(1, 2, 0, b"x");
        assert!(assembly.add(Chunk::parse(&first).expect("valid")).expect("fits").is_none());
        let other_total = split_packet(1, 3, 1, b"y");
        assert!(assembly.add(Chunk::parse(&other_total).expect("valid alone")).is_err());
    }
}
