//! Source RCON on the TCP game port, per Valve's "Source RCON Protocol", with srcds's quirks: an empty
//! RESPONSE_VALUE before every AUTH_RESPONSE, the end-of-response echo of a client's RESPONSE_VALUE, and bans
//! after repeated failed logins.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::console::{Server, log};

const SERVERDATA_AUTH: i32 = 3;
const SERVERDATA_AUTH_RESPONSE: i32 = 2;
const SERVERDATA_EXECCOMMAND: i32 = 2;
const SERVERDATA_RESPONSE_VALUE: i32 = 0;

/// The packet size field counts id, type, body and the two NULs; srcds accepts 10 to 4096.
const MIN_SIZE: i32 = 10;
const MAX_SIZE: i32 = 4096;
/// The longest body of one response packet; longer output spans several packets with the same id.
const MAX_BODY: usize = 4096 - 14;
/// What srcds sends after echoing a client's RESPONSE_VALUE; clients use the pair as an end marker.
const END_MARKER_BODY: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

/// Connections served at once; more are closed, so a flood cannot exhaust threads.
const MAX_CONNECTIONS: usize = 64;

pub fn serve(server: &Arc<Server>, listener: &TcpListener) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                log(&format!("RCON: accepting on {} failed: {err}", server.addr));
                // Running out of descriptors fails every accept; back off instead of spinning.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        if server.state().banned.contains(&peer.ip()) {
            // A banned address gets its connection closed at once, without a word.
            continue;
        }
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            log(&format!("RCON: too many connections, closing the one from {peer}"));
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let server = Arc::clone(server);
        let counter = Arc::clone(&active);
        let spawned = std::thread::Builder::new().name(format!("rcon {peer}")).spawn(move || {
            Connection { server: &server, peer, authenticated: false }.run(stream);
            counter.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(err) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            log(&format!("RCON: cannot start a thread for {peer}: {err}"));
        }
    }
}

struct Packet {
    id: i32,
    kind: i32,
    body: String,
}

struct Connection<'a> {
    server: &'a Server,
    peer: SocketAddr,
    authenticated: bool,
}

impl Connection<'_> {
    /// Serves one client until it leaves or is thrown out; returning closes the connection.
    fn run(&mut self, stream: TcpStream) {
        let mut reader = match stream.try_clone() {
            Ok(clone) => BufReader::new(clone),
            Err(err) => {
                log(&format!("RCON: cannot read from {}: {err}", self.peer));
                return;
            }
        };
        let mut writer = stream;
        loop {
            let packet = match read_packet(&mut reader) {
                Ok(Some(packet)) => packet,
                Ok(None) => return,
                Err(reason) => {
                    log(&format!("RCON: closing the connection from {}: {reason}", self.peer));
                    return;
                }
            };
            let Some(reply) = self.handle(&packet) else {
                return;
            };
            if writer.write_all(&reply).is_err() {
                return;
            }
            if self.server.state().banned.contains(&self.peer.ip()) {
                return;
            }
        }
    }

    /// The bytes to send for one packet, or None to close the connection.
    fn handle(&mut self, packet: &Packet) -> Option<Vec<u8>> {
        let mut reply = Vec::new();
        match packet.kind {
            SERVERDATA_AUTH => {
                let accepted = self.authenticate(&packet.body);
                encode(&mut reply, packet.id, SERVERDATA_RESPONSE_VALUE, b"");
                encode(&mut reply, if accepted { packet.id } else { -1 }, SERVERDATA_AUTH_RESPONSE, b"");
            }
            // A command before a successful login is refused by closing the connection, as srcds does.
            SERVERDATA_EXECCOMMAND | SERVERDATA_RESPONSE_VALUE if !self.authenticated => return None,
            SERVERDATA_EXECCOMMAND => {
                log(&format!("rcon from \"{}\": command \"{}\"", self.peer, packet.body));
                let output = {
                    let mut st = self.server.state();
                    self.server.execute(&mut st, &packet.body)
                };
                let output = output.as_bytes();
                if output.is_empty() {
                    encode(&mut reply, packet.id, SERVERDATA_RESPONSE_VALUE, b"");
                }
                for chunk in output.chunks(MAX_BODY) {
                    encode(&mut reply, packet.id, SERVERDATA_RESPONSE_VALUE, chunk);
                }
            }
            SERVERDATA_RESPONSE_VALUE => {
                encode(&mut reply, packet.id, SERVERDATA_RESPONSE_VALUE, b"");
                encode(&mut reply, packet.id, SERVERDATA_RESPONSE_VALUE, &END_MARKER_BODY);
            }
            // srcds ignores packet types it does not know.
            _ => {}
        }
        Some(reply)
    }

    fn authenticate(&mut self, password: &str) -> bool {
        let mut st = self.server.state();
        // With no rcon_password set, srcds refuses every login.
        let expected = st.cvar_or_empty("rcon_password");
        if !expected.is_empty() && password == expected {
            self.authenticated = true;
            return true;
        }
        self.authenticated = false;
        log(&format!("rcon from \"{}\": Bad Password", self.peer));
        let max_failures = st.cvar("sv_rcon_maxfailures").and_then(|value| value.trim().parse().ok()).unwrap_or(5);
        let ip = self.peer.ip();
        let failures = st.rcon_failures.entry(ip).or_insert(0);
        *failures += 1;
        if *failures >= max_failures {
            st.banned.insert(ip);
            log(&format!("Banning {ip} for rcon hacking attempts"));
        }
        false
    }
}

/// The next packet, None at a clean end of the stream, or why the connection must close.
fn read_packet(reader: &mut impl Read) -> Result<Option<Packet>, String> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(format!("reading failed: {err}")),
    }
    let size = i32::from_le_bytes(size);
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(format!("packet size {size} outside {MIN_SIZE}..{MAX_SIZE}"));
    }
    let mut data = vec![0u8; usize::try_from(size).expect("the size was checked to be positive")];
    reader.read_exact(&mut data).map_err(|err| format!("reading a packet of {size} bytes failed: {err}"))?;
    let id = i32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let kind = i32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    let body = &data[8..];
    let body = body.iter().position(|&b| b == 0).map_or(body, |end| &body[..end]);
    Ok(Some(Packet { id, kind, body: String::from_utf8_lossy(body).into_owned() }))
}

fn encode(out: &mut Vec<u8>, id: i32, kind: i32, body: &[u8]) {
    let size = i32::try_from(body.len() + 10).expect("response bodies are split below 4096 bytes");
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&[0, 0]);
}
