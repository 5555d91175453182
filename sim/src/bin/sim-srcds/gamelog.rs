//! The game's log stream, as srcds sends it with `log on` and `logaddress_add`: each line a UDP
//! packet to every address added, `\xff\xff\xff\xff` then `S` and the digits of `sv_logsecret`
//! (or `R` with no secret) then `L MM/DD/YYYY - HH:MM:SS: <text>\n\0`.

use std::net::{SocketAddr, UdpSocket};

/// The log's sending side: a socket of its own on the server's address, as srcds sends from it.
pub struct GameLog {
    socket: Option<UdpSocket>,
}

impl GameLog {
    pub fn new(server: SocketAddr) -> GameLog {
        GameLog { socket: UdpSocket::bind(SocketAddr::new(server.ip(), 0)).ok() }
    }

    /// Sends one line to every address, signed with `secret` (empty or 0: none), when the log is on.
    pub fn send(&self, on: bool, secret: &str, to: &[SocketAddr], text: &str) {
        let Some(socket) = self.socket.as_ref().filter(|_| on) else { return };
        let packet = packet(secret, &stamp(std::time::SystemTime::now()), text);
        for addr in to {
            // A log address that does not take it is no fault of the server's.
            let _ = socket.send_to(&packet, addr);
        }
    }
}

/// One packet of the log.
pub fn packet(secret: &str, stamp: &str, text: &str) -> Vec<u8> {
    let mut packet = b"\xff\xff\xff\xff".to_vec();
    let secret = secret.trim();
    if secret.is_empty() || secret == "0" {
        packet.push(b'R');
    } else {
        packet.push(b'S');
        packet.extend_from_slice(secret.as_bytes());
    }
    packet.extend_from_slice(format!("L {stamp}: {text}\n\0").as_bytes());
    packet
}

/// `MM/DD/YYYY - HH:MM:SS` in UTC (srcds writes local time; the host's is UTC in tests).
fn stamp(time: std::time::SystemTime) -> String {
    let secs = time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil(days as i64);
    format!("{month:02}/{day:02}/{year:04} - {:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// A simulated player as the log names them: the same as `status` lists (`Player <i>`, user ID
/// i + 1, `STEAM_1:0:<1000 + i>`), with their team.
pub fn player(i: u32, team: &str) -> String {
    format!("\"Player {i}<{}><STEAM_1:0:{}><{team}>\"", i + 1, 1000 + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_srcds_own() {
        assert_eq!(
            packet("123456789", "12/01/2026 - 19:00:00", "World triggered \"Round_Start\""),
            b"\xff\xff\xff\xffS123456789L 12/01/2026 - 19:00:00: World triggered \"Round_Start\"\n\0"
        );
        assert!(packet("", "12/01/2026 - 19:00:00", "x").starts_with(b"\xff\xff\xff\xffRL "));
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_151_600);
        assert_eq!(stamp(at), "12/01/2026 - 19:00:00");
        assert_eq!(player(1, ""), "\"Player 1<2><STEAM_1:0:1001><>\"");
    }
}
