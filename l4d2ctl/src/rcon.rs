//! Source RCON client (Valve's "Source RCON Protocol"): how l4d2ctl runs console commands on a game server.
//!
//! One connection, one command at a time. srcds marks neither the end of a command's output nor how many
//! packets it spans, so every command is followed by an empty RESPONSE_VALUE whose echo marks the end.
//! Every wait is bounded: the connection, the login and each packet of a reply must arrive within the
//! timeout given to [`Rcon::connect`], and a reply is refused once it grows beyond [`MAX_OUTPUT`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A logged-in RCON connection.
pub struct Rcon {
    stream: TcpStream,
    addr: SocketAddr,
    timeout: Duration,
    next_id: i32,
    /// Set when a command failed part-way: unread packets of its reply may still be in flight, so the next
    /// reply could not be told apart from them.
    out_of_step: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RconError {
    #[error("cannot connect to RCON at {addr}: {cause}")]
    Connect { addr: SocketAddr, cause: io::Error },
    #[error("RCON at {addr} refused the password (repeated failures get the client address banned)")]
    AuthFailed { addr: SocketAddr },
    #[error("RCON at {addr}: {cause}")]
    Io { addr: SocketAddr, cause: io::Error },
    #[error("RCON at {addr}: protocol error: {reason}")]
    Protocol { addr: SocketAddr, reason: String },
    #[error("RCON at {addr}: no answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    /// A command or password that no RCON packet can carry; nothing was sent.
    #[error("RCON at {addr}: cannot send {what}: {reason}")]
    InvalidInput { addr: SocketAddr, what: &'static str, reason: String },
}

/// The largest reply [`Rcon::exec`] collects. Real command output is a few hundred KiB at most (`cvarlist`
/// with plugins loaded); a server that streams without end must not exhaust memory.
pub const MAX_OUTPUT: usize = 16 << 20;

const SERVERDATA_AUTH: i32 = 3;
const SERVERDATA_AUTH_RESPONSE: i32 = 2;
const SERVERDATA_EXECCOMMAND: i32 = 2;
const SERVERDATA_RESPONSE_VALUE: i32 = 0;

/// The size field counts id, type, body and the two NULs. srcds accepts 10 to 4096 from clients; it is
/// allowed to send up to 4106, as some servers put a full 4096-byte body in a packet.
const MIN_SIZE: usize = 10;
const MAX_SEND_SIZE: usize = 4096;
const MAX_RECEIVE_SIZE: usize = 4106;
/// The longest command or password one packet carries.
pub const MAX_BODY: usize = MAX_SEND_SIZE - MIN_SIZE;

/// srcds answers the end-marker packet twice (an empty body, then `00 01 00 00`); other servers answer once.
/// The second answer comes right behind the first, so waiting for it only briefly costs servers without it
/// little, and one that comes later is skipped by the next command anyway.
const SECOND_MARKER_GRACE: Duration = Duration::from_millis(100);
/// srcds sends one empty RESPONSE_VALUE before its AUTH_RESPONSE; more than a few means something else talks.
const MAX_PACKETS_BEFORE_AUTH_RESPONSE: usize = 4;

impl Rcon {
    /// Connects and authenticates. Auth: send AUTH(3); skip the empty RESPONSE_VALUE the server sends first;
    /// AUTH_RESPONSE(2) with id == request id → ok, id == -1 → AuthFailed.
    ///
    /// `timeout` bounds the connection, the login, and later every wait for a packet of a command's reply.
    pub fn connect(addr: SocketAddr, password: &str, timeout: Duration) -> Result<Rcon, RconError> {
        // The password is checked before connecting: one that cannot be sent is not worth a connection.
        let id = 1;
        let login = encode(id, SERVERDATA_AUTH, password).map_err(|reason| RconError::InvalidInput {
            addr,
            what: "the password",
            reason,
        })?;
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|cause| RconError::Connect { addr, cause })?;
        // Requests are written whole; Nagle's delay would only hold back the end marker.
        stream.set_nodelay(true).map_err(|cause| RconError::Io { addr, cause })?;
        let mut rcon = Rcon { stream, addr, timeout, next_id: id + 1, out_of_step: false };
        rcon.write(&login)?;

        let deadline = Instant::now() + timeout;
        for _ in 0..=MAX_PACKETS_BEFORE_AUTH_RESPONSE {
            let reply = rcon.read_packet(deadline)?;
            match (reply.kind, reply.id) {
                (SERVERDATA_RESPONSE_VALUE, _) => continue,
                (SERVERDATA_AUTH_RESPONSE, reply_id) if reply_id == id => return Ok(rcon),
                (SERVERDATA_AUTH_RESPONSE, -1) => return Err(RconError::AuthFailed { addr }),
                (kind, reply_id) => {
                    return Err(rcon.protocol(format!(
                        "answered the login (id {id}) with a packet of type {kind} and id {reply_id}"
                    )));
                }
            }
        }
        Err(rcon.protocol(format!(
            "sent {MAX_PACKETS_BEFORE_AUTH_RESPONSE} RESPONSE_VALUE packets and still no AUTH_RESPONSE to the login"
        )))
    }

    /// The server this connection talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs one command and returns its whole output, however many packets it spans: after the
    /// EXECCOMMAND(2) packet an empty RESPONSE_VALUE(0) packet with another id goes out, and RESPONSE_VALUE
    /// bodies with the command's id are collected until the marker id comes back.
    ///
    /// After a failure other than `InvalidInput` the connection is out of step and every later call fails;
    /// connect again.
    pub fn exec(&mut self, command: &str) -> Result<String, RconError> {
        if self.out_of_step {
            return Err(self.protocol("an earlier command failed part-way through its reply; connect again".into()));
        }
        let command_id = self.take_id();
        let marker_id = self.take_id();
        let mut request = encode(command_id, SERVERDATA_EXECCOMMAND, command)
            .map_err(|reason| RconError::InvalidInput { addr: self.addr, what: "the command", reason })?;
        let marker = encode(marker_id, SERVERDATA_RESPONSE_VALUE, "")
            .map_err(|reason| self.protocol(format!("cannot encode the end marker: {reason}")))?;
        request.extend_from_slice(&marker);

        let result = self.exchange(&request, command_id, marker_id);
        if result.is_err() {
            self.out_of_step = true;
        }
        result
    }

    fn exchange(&mut self, request: &[u8], command_id: i32, marker_id: i32) -> Result<String, RconError> {
        self.write(request)?;
        let mut output = Vec::new();
        let mut received = 0usize;
        loop {
            let packet = self.read_packet(Instant::now() + self.timeout)?;
            received += MIN_SIZE + packet.body.len();
            if received > MAX_OUTPUT {
                return Err(self.protocol(format!("the reply to one command exceeds {MAX_OUTPUT} bytes")));
            }
            if packet.id == marker_id {
                break;
            }
            if packet.id == command_id {
                if packet.kind != SERVERDATA_RESPONSE_VALUE {
                    return Err(self.protocol(format!("a reply packet of type {}, expected 0", packet.kind)));
                }
                output.extend_from_slice(&packet.body);
            }
            // Any other id answers an earlier request: the second end marker of the previous command, when it
            // came after we stopped waiting for it.
        }
        self.skip_second_marker()?;
        // Output is decoded only once whole: a packet boundary may fall inside a multi-byte character.
        Ok(String::from_utf8_lossy(&output).into_owned())
    }

    /// Consumes srcds's second answer to the end marker if it is already there or comes at once.
    fn skip_second_marker(&mut self) -> Result<(), RconError> {
        let grace = SECOND_MARKER_GRACE.min(self.timeout).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(grace)).map_err(|cause| self.io(cause))?;
        match self.stream.peek(&mut [0u8; 1]) {
            // Once its first byte is there, the packet is read whole under the normal timeout, so that a slow
            // packet is never left half-read.
            Ok(1..) => self.read_packet(Instant::now() + self.timeout).map(drop),
            // A closed connection fails the next command, which is where it matters; this output is complete.
            Ok(0) => Ok(()),
            Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(cause) => Err(self.io(cause)),
        }
    }

    fn take_id(&mut self) -> i32 {
        let id = self.next_id;
        // Ids stay positive: -1 is the server's "login refused".
        self.next_id = if id == i32::MAX { 1 } else { id + 1 };
        id
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), RconError> {
        let timeout = self.timeout.max(Duration::from_millis(1));
        self.stream.set_write_timeout(Some(timeout)).map_err(|cause| self.io(cause))?;
        self.stream.write_all(bytes).map_err(|cause| self.io(cause))
    }

    fn read_packet(&mut self, deadline: Instant) -> Result<Packet, RconError> {
        let mut size = [0u8; 4];
        self.read_exact(&mut size, deadline)?;
        let size = packet_size(size).map_err(|reason| self.protocol(reason))?;
        let mut data = vec![0u8; size];
        self.read_exact(&mut data, deadline)?;
        Packet::parse(&data).map_err(|reason| self.protocol(reason))
    }

    /// `read_exact` that gives up at the deadline, however slowly the bytes trickle in.
    fn read_exact(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), RconError> {
        let mut filled = 0;
        while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Err(RconError::Timeout { addr: self.addr, timeout: self.timeout });
            }
            self.stream.set_read_timeout(Some(wait)).map_err(|cause| self.io(cause))?;
            match self.stream.read(rest) {
                Ok(0) => {
                    let cause = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection (it closes banned addresses at once)",
                    );
                    return Err(self.io(cause));
                }
                Ok(read) => filled += read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(cause) => return Err(self.io(cause)),
            }
        }
        Ok(())
    }

    fn io(&self, cause: io::Error) -> RconError {
        match cause.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                RconError::Timeout { addr: self.addr, timeout: self.timeout }
            }
            _ => RconError::Io { addr: self.addr, cause },
        }
    }

    fn protocol(&self, reason: String) -> RconError {
        RconError::Protocol { addr: self.addr, reason }
    }
}

/// One received packet.
#[derive(Debug, PartialEq, Eq)]
struct Packet {
    id: i32,
    kind: i32,
    body: Vec<u8>,
}

impl Packet {
    /// Parses what follows the size field.
    fn parse(data: &[u8]) -> Result<Packet, String> {
        let (Some(id), Some(kind)) = (data.first_chunk::<4>(), data.get(4..).and_then(<[u8]>::first_chunk::<4>)) else {
            return Err(format!("a packet of {} bytes, too short for its id and type", data.len()));
        };
        // The body ends at its NUL; the empty string after it carries nothing.
        let body = data.get(8..).unwrap_or_default();
        let body = body.split(|&byte| byte == 0).next().unwrap_or_default();
        Ok(Packet { id: i32::from_le_bytes(*id), kind: i32::from_le_bytes(*kind), body: body.to_vec() })
    }
}

/// The length of the rest of a packet, from its size field.
fn packet_size(field: [u8; 4]) -> Result<usize, String> {
    let size = i32::from_le_bytes(field);
    match usize::try_from(size) {
        Ok(size) if (MIN_SIZE..=MAX_RECEIVE_SIZE).contains(&size) => Ok(size),
        _ => Err(format!("a packet size of {size}, outside {MIN_SIZE}..={MAX_RECEIVE_SIZE}")),
    }
}

/// One packet as sent: size, id, type, body, and the two NULs.
fn encode(id: i32, kind: i32, body: &str) -> Result<Vec<u8>, String> {
    if let Some(at) = body.find('\0') {
        return Err(format!("it contains a NUL byte (at byte {at}), which would end it early"));
    }
    if body.len() > MAX_BODY {
        return Err(format!("it is {} bytes long; one RCON packet carries at most {MAX_BODY}", body.len()));
    }
    let size = i32::try_from(MIN_SIZE + body.len()).map_err(|_| "the packet size overflows".to_owned())?;
    let mut packet = Vec::with_capacity(4 + MIN_SIZE + body.len());
    packet.extend_from_slice(&size.to_le_bytes());
    packet.extend_from_slice(&id.to_le_bytes());
    packet.extend_from_slice(&kind.to_le_bytes());
    packet.extend_from_slice(body.as_bytes());
    packet.extend_from_slice(&[0, 0]);
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_packets_as_the_protocol_describes() {
        let packet = encode(7, SERVERDATA_EXECCOMMAND, "status").expect("a plain command");
        let mut expected = 16i32.to_le_bytes().to_vec();
        expected.extend_from_slice(&7i32.to_le_bytes());
        expected.extend_from_slice(&2i32.to_le_bytes());
        expected.extend_from_slice(b"status\0\0");
        assert_eq!(packet, expected);
        assert_eq!(encode(8, SERVERDATA_RESPONSE_VALUE, "").expect("the end marker").len(), 14);
    }

    #[test]
    fn refuses_what_no_packet_can_carry() {
        assert!(encode(1, SERVERDATA_EXECCOMMAND, "say a\0b").expect_err("a NUL").contains("NUL"));
        let longest = "x".repeat(MAX_BODY);
        let packet = encode(1, SERVERDATA_EXECCOMMAND, &longest).expect("the longest body fits");
        assert_eq!(packet_size(packet[..4].try_into().expect("four bytes")), Ok(MAX_SEND_SIZE));
        let too_long = "x".repeat(MAX_BODY + 1);
        assert!(encode(1, SERVERDATA_EXECCOMMAND, &too_long).expect_err("too long").contains("at most 4086"));
    }

    #[test]
    fn received_sizes_are_bounded() {
        for (size, ok) in [(-1, false), (0, false), (9, false), (10, true), (4096, true), (4106, true), (4107, false)] {
            assert_eq!(packet_size(i32::to_le_bytes(size)).is_ok(), ok, "size {size}");
        }
    }

    #[test]
    fn parses_bodies_up_to_their_nul() {
        let mut data = 5i32.to_le_bytes().to_vec();
        data.extend_from_slice(&0i32.to_le_bytes());
        data.extend_from_slice(b"hostname: x\n\0\0");
        assert_eq!(Packet::parse(&data), Ok(Packet { id: 5, kind: 0, body: b"hostname: x\n".to_vec() }));
        // srcds's second end-marker answer: its body starts with a NUL, so it reads as empty.
        let mut marker = 6i32.to_le_bytes().to_vec();
        marker.extend_from_slice(&[0, 0, 0, 0, 0x00, 0x01, 0x00, 0x00, 0, 0]);
        assert_eq!(Packet::parse(&marker).map(|packet| packet.body), Ok(Vec::new()));
        for len in 0..8 {
            assert!(Packet::parse(&data[..len]).is_err(), "a packet cut at {len}");
        }
    }
}
