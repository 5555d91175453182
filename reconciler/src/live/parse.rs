//! srcds's log stream, read: a packet's secret and line, and what a line says. Pure: bytes in,
//! values out, nothing kept; whatever the bytes, the answer is bounded and nothing panics.
//!
//! A packet is `\xff\xff\xff\xff`, then `S` and the digits of `sv_logsecret` (or `R` when the
//! server has none), then `L MM/DD/YYYY - HH:MM:SS: <text>\n\0`. A player in a line is
//! `"Name<userid><SteamID><team>"`: the name is the player's own and may hold `<`, `>` and `"`,
//! so a player is read from its right end, where the engine's own fields are.

use super::db::GameEventKind;

/// srcds's lines are under 1 KiB; a packet over this is no log line and is dropped unread.
pub const MAX_PACKET: usize = 4096;

/// What a packet carries, before its secret is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The secret it was signed with; None for a packet of type `R` (no secret).
    pub secret: Option<u32>,
    /// The log line after the `L ` and its date, with the trailing newline and NUL taken off.
    pub text: &'a [u8],
}

/// Why a packet is no log line of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over [`MAX_PACKET`].
    TooLong,
    /// Not the connectionless header and a log type, or no `L <date>: ` line.
    NotALogLine,
    /// Type `S` with digits that are no secret (none, too many, 0).
    BadSecret,
}

/// What one log line tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The server started logging: it started again, and nobody is on yet.
    LogStarted,
    /// Something to keep.
    Event(Event),
    /// A line nothing here needs (a cvar change, `Loading map`, STEAMAUTH, a bot's coming and going).
    Other,
}

/// An event as a line says it; the listener adds the server and the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: GameEventKind,
    pub player: Option<String>,
    pub steam_id: Option<String>,
    pub text: Option<String>,
}

/// One of a line's players: `"Name<userid><SteamID><team>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Player<'a> {
    pub name: &'a str,
    pub userid: u32,
    pub steam_id: &'a str,
    pub team: &'a str,
}

/// Reads a packet's header, secret and line.
pub fn packet(bytes: &[u8]) -> Result<Packet<'_>, Refused> {
    if bytes.len() > MAX_PACKET {
        return Err(Refused::TooLong);
    }
    let rest = bytes.strip_prefix(b"\xff\xff\xff\xff").ok_or(Refused::NotALogLine)?;
    let (secret, rest) = match rest.split_first() {
        Some((b'R', rest)) => (None, rest),
        Some((b'S', rest)) => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let secret = std::str::from_utf8(&rest[..digits])
                .ok()
                .filter(|d| !d.is_empty() && d.len() <= 10)
                .and_then(|d| d.parse::<u32>().ok())
                .filter(|secret| *secret != 0)
                .ok_or(Refused::BadSecret)?;
            (Some(secret), &rest[digits..])
        }
        _ => return Err(Refused::NotALogLine),
    };
    let text = strip_date(rest).ok_or(Refused::NotALogLine)?;
    let end = text.iter().rposition(|b| !matches!(b, b'\0' | b'\n' | b'\r')).map_or(0, |last| last + 1);
    Ok(Packet { secret, text: &text[..end] })
}

/// `L 12/01/2026 - 19:00:00: ` off the front of a line.
fn strip_date(line: &[u8]) -> Option<&[u8]> {
    const SHAPE: &[u8] = b"L 00/00/0000 - 00:00:00: ";
    let head = line.get(..SHAPE.len())?;
    let fits = head.iter().zip(SHAPE).all(|(b, s)| if *s == b'0' { b.is_ascii_digit() } else { b == s });
    fits.then(|| &line[SHAPE.len()..])
}

/// What a line's text says. Text that is not UTF-8 is read with its bad bytes replaced.
pub fn line(text: &[u8]) -> Line {
    let text = String::from_utf8_lossy(text);
    let text = text.as_ref();
    if text.starts_with("Log file started") {
        return Line::LogStarted;
    }
    if let Some(map) = text.strip_prefix("Started map \"") {
        let map = map.split('"').next().unwrap_or_default();
        return world(GameEventKind::MapStarted, Some(map));
    }
    if let Some(what) = text.strip_prefix("World triggered \"") {
        return match what.split('"').next() {
            Some("Round_Start") => world(GameEventKind::RoundStarted, None),
            Some("Round_End") => world(GameEventKind::RoundEnded, None),
            Some("Game_Over") => world(GameEventKind::CampaignEnded, None),
            _ => Line::Other,
        };
    }
    if text.starts_with('"') {
        return player_line(text);
    }
    Line::Other
}

fn world(kind: GameEventKind, text: Option<&str>) -> Line {
    Line::Event(Event { kind, player: None, steam_id: None, text: text.map(str::to_owned) })
}

/// What follows a player in each line kept, and what ends the text kept after it (None: no text).
const VERBS: &[(&str, GameEventKind, Option<&str>)] = &[
    ("\" connected, address \"", GameEventKind::Connected, None),
    ("\" entered the game", GameEventKind::Entered, None),
    ("\" disconnected (reason \"", GameEventKind::Disconnected, Some("\")")),
    ("\" say_team \"", GameEventKind::SayTeam, Some("\"")),
    ("\" say \"", GameEventKind::Say, Some("\"")),
];

/// A line about a player. The player's name may hold any of the verbs' words, so each place a
/// verb follows a well-formed player is tried from the left; the first one wins.
fn player_line(text: &str) -> Line {
    let mut best: Option<(usize, &str, GameEventKind, Option<&str>)> = None;
    for (verb, kind, end) in VERBS {
        let mut from = 1;
        while let Some(at) = text[from..].find(verb).map(|i| i + from) {
            if player(&text[1..at]).is_some() {
                if best.is_none_or(|(b, ..)| at < b) {
                    best = Some((at, verb, *kind, *end));
                }
                break;
            }
            from = at + 1;
        }
    }
    let Some((at, verb, kind, end)) = best else { return Line::Other };
    let Some(who) = player(&text[1..at]) else { return Line::Other };
    // Bots come and go with every map and share one ID; only people are followed.
    if who.steam_id == "BOT" {
        return Line::Other;
    }
    let rest = &text[at + verb.len()..];
    let said = end.map(|end| rest.strip_suffix(end).unwrap_or(rest));
    Line::Event(Event {
        kind,
        player: Some(who.name.to_owned()),
        steam_id: Some(who.steam_id.to_owned()),
        text: said.map(str::to_owned),
    })
}

/// A player, `Name<userid><SteamID><team>` (the quotes around it taken off), read from the
/// right: the team and the Steam ID hold no `<` or `>`, the user ID is digits, and the name is
/// whatever is left, brackets and quotes included.
pub fn player(entity: &str) -> Option<Player<'_>> {
    let (rest, team) = last_field(entity)?;
    let (rest, steam_id) = last_field(rest)?;
    let (name, userid) = last_field(rest)?;
    if steam_id.is_empty() || userid.is_empty() || !userid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Player { name, userid: userid.parse().ok()?, steam_id, team })
}

/// `rest<field>` into `(rest, field)`, the field holding no `<` or `>`.
fn last_field(text: &str) -> Option<(&str, &str)> {
    let inner = text.strip_suffix('>')?;
    let open = inner.rfind('<')?;
    let field = &inner[open + 1..];
    if field.contains('>') {
        return None;
    }
    Some((&inner[..open], field))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &str, text: &str) -> Vec<u8> {
        let mut bytes = b"\xff\xff\xff\xffS".to_vec();
        bytes.extend_from_slice(secret.as_bytes());
        bytes.extend_from_slice(format!("L 12/01/2026 - 19:00:00: {text}\n\0").as_bytes());
        bytes
    }

    fn event(kind: GameEventKind, who: Option<(&str, &str)>, text: Option<&str>) -> Line {
        Line::Event(Event {
            kind,
            player: who.map(|(name, _)| name.to_owned()),
            steam_id: who.map(|(_, id)| id.to_owned()),
            text: text.map(str::to_owned),
        })
    }

    #[test]
    fn a_packet_gives_its_secret_and_its_line() {
        let bytes = signed("123456789", "\"Ellis<2><STEAM_1:0:12345><>\" entered the game");
        let read = packet(&bytes).unwrap();
        assert_eq!(read.secret, Some(123_456_789));
        assert_eq!(read.text, b"\"Ellis<2><STEAM_1:0:12345><>\" entered the game");
        let unsigned = b"\xff\xff\xff\xffRL 12/01/2026 - 19:00:00: World triggered \"Round_Start\"\n\0";
        assert_eq!(packet(unsigned).unwrap(), Packet { secret: None, text: b"World triggered \"Round_Start\"" });
    }

    #[test]
    fn packets_that_are_no_log_line_are_refused() {
        let long = signed("123456789", &format!("\"{}<2><STEAM_1:0:1><>\" say \"x\"", "a".repeat(MAX_PACKET)));
        assert_eq!(packet(&long), Err(Refused::TooLong));
        for bytes in [
            &b""[..],
            b"\xff\xff\xff",
            b"\xff\xff\xff\xff",
            b"\xff\xff\xff\xffT",
            b"\xff\xff\xff\xffRL 12/01/2026",
            b"\xff\xff\xff\xffRhello",
            b"\xfe\xff\xff\xffRL 12/01/2026 - 19:00:00: x",
            b"\xff\xff\xff\xffRL ab/01/2026 - 19:00:00: x",
            b"\xff\xff\xff\xffS123456789",
            b"\xff\xff\xff\xffS123456789L 12/01",
        ] {
            assert_eq!(packet(bytes), Err(Refused::NotALogLine), "{bytes:?}");
        }
        for secret in ["", "0", "00000", "99999999999", "4294967296"] {
            assert_eq!(packet(&signed(secret, "x")), Err(Refused::BadSecret), "{secret:?}");
        }
        // A secret's digits end where the line's L begins: one more digit is another secret.
        assert_eq!(packet(&signed("4294967295", "x")).unwrap().secret, Some(u32::MAX));
    }

    #[test]
    fn the_lines_of_a_game_are_read() {
        let ellis = Some(("Ellis", "STEAM_1:0:12345"));
        for (text, expected) in [
            (
                "Log file started (file \"logs/L1201000.log\") (game \"/srv/left4dead2\") (version \"8741\")",
                Line::LogStarted,
            ),
            ("Loading map \"c1m1_hotel\"", Line::Other),
            ("Started map \"c1m1_hotel\" (CRC \"-1234\")", event(GameEventKind::MapStarted, None, Some("c1m1_hotel"))),
            ("World triggered \"Round_Start\"", event(GameEventKind::RoundStarted, None, None)),
            ("World triggered \"Round_End\"", event(GameEventKind::RoundEnded, None, None)),
            ("World triggered \"Game_Over\"", event(GameEventKind::CampaignEnded, None, None)),
            ("World triggered \"Something_Else\"", Line::Other),
            (
                "\"Ellis<2><STEAM_1:0:12345><>\" connected, address \"10.0.0.2:27005\"",
                event(GameEventKind::Connected, ellis, None),
            ),
            ("\"Ellis<2><STEAM_1:0:12345><>\" STEAMAUTH: Client Ellis received failure code 6", Line::Other),
            ("\"Ellis<2><STEAM_1:0:12345><>\" entered the game", event(GameEventKind::Entered, ellis, None)),
            (
                "\"Ellis<2><STEAM_1:0:12345><Survivor>\" disconnected (reason \"Disconnect\")",
                event(GameEventKind::Disconnected, ellis, Some("Disconnect")),
            ),
            ("\"Ellis<2><STEAM_1:0:12345><Survivor>\" say \"hi\"", event(GameEventKind::Say, ellis, Some("hi"))),
            (
                "\"Ellis<2><STEAM_1:0:12345><Survivor>\" say_team \"rush\"",
                event(GameEventKind::SayTeam, ellis, Some("rush")),
            ),
            ("\"Console<0><Console><Console>\" say \"restart\"", {
                event(GameEventKind::Say, Some(("Console", "Console")), Some("restart"))
            }),
            ("\"Coach<3><BOT><Survivor>\" entered the game", Line::Other),
            ("\"Ellis<2><STEAM_1:0:12345><Survivor>\" joined team \"Survivor\"", Line::Other),
            ("server_cvar: \"sv_cheats\" \"0\"", Line::Other),
        ] {
            assert_eq!(line(text.as_bytes()), expected, "{text}");
        }
    }

    #[test]
    fn names_are_the_players_own_whatever_they_hold() {
        for (text, name, said) in [
            ("\"<<>>\"<7><STEAM_1:1:9><Survivor>\" say \"x\"", "<<>>\"", "x"),
            ("\"a\" say \"b<1><STEAM_1:0:1><>\" say \"c\"", "a\" say \"b", "c"),
            ("\"Zoë 🧟<3><STEAM_1:0:5><Infected>\" say \"\"quoted\" text\"", "Zoë 🧟", "\"quoted\" text"),
            ("\"Ellis<2><STEAM_1:0:12345><Survivor>\" say \"say \"hi\"\"", "Ellis", "say \"hi\""),
        ] {
            let Line::Event(event) = line(text.as_bytes()) else { panic!("{text} was not read") };
            assert_eq!((event.player.as_deref(), event.text.as_deref()), (Some(name), Some(said)), "{text}");
        }
    }

    #[test]
    fn hostile_lines_are_other_lines_or_read_within_bounds() {
        let long = format!("\"{}<2><STEAM_1:0:1><>\" say \"{}\"", "<".repeat(2000), "\"".repeat(1000));
        for text in [
            &b"\"Ellis<2><STEAM_1:0:12345><>\" entered the gam"[..],
            b"\"Ellis<2><STEAM_1:0:12345>\" entered the game",
            b"\"Ellis<x><STEAM_1:0:12345><>\" entered the game",
            b"\"Ellis<2><><>\" entered the game",
            b"\"Ellis<2><STEAM_1:0:12345><>",
            b"\"",
            b"\"\" say \"\"",
            b"",
            b"Started map",
            b"World triggered",
        ] {
            assert_eq!(line(text), Line::Other, "{:?}", String::from_utf8_lossy(text));
        }
        let Line::Event(event) = line(long.as_bytes()) else { panic!("the long line was not read") };
        assert_eq!((event.kind, event.player.map(|name| name.len())), (GameEventKind::Say, Some(2000)));
        // Bytes that are not UTF-8 are kept as replacement characters, not refused.
        let Line::Event(event) = line(b"\"\xffEllis<2><STEAM_1:0:12345><>\" say \"\xc3(\"") else { panic!() };
        assert_eq!(event.player.as_deref(), Some("\u{fffd}Ellis"));
        assert_eq!(event.text.as_deref(), Some("\u{fffd}("));
    }
}
