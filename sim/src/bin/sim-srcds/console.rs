//! The server console: cvars, the commands srcds understands (as far as left4me sees them), config files,
//! maps, and the console log on stdout.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::gamelog::{self, GameLog};

/// The version srcds reports in A2S_INFO and `status` when its install has no readable `steam.inf`.
const DEFAULT_VERSION: &str = "2.2.4.3";
/// The install's version file, relative to the game root; srcds reports its `PatchVersion`.
const STEAM_INF: &str = "left4dead2/steam.inf";
/// A steam.inf is a few lines; anything longer is not one.
const MAX_STEAM_INF: u64 = 64 * 1024;

/// Where srcds looks for configs and maps, relative to the game root (the working directory).
const CFG_DIR: &str = "left4dead2/cfg";
const MAPS_DIR: &str = "left4dead2/maps";

/// srcds keeps a short list of log addresses.
const MAX_LOG_ADDRESSES: usize = 32;

/// srcds refuses deeper `exec` nesting; a config that execs itself must not hang the server.
const MAX_EXEC_DEPTH: u32 = 16;

/// Cvars a fresh server has before any config runs.
const DEFAULT_CVARS: &[(&str, &str)] = &[
    ("hostname", "Left 4 Dead 2"),
    ("rcon_password", ""),
    ("sv_password", ""),
    ("mp_gamemode", "coop"),
    ("z_difficulty", "Normal"),
    ("sv_cheats", "0"),
    ("sv_lan", "0"),
    ("sv_consistency", "1"),
    ("sv_allow_lobby_connect_only", "1"),
    ("sv_rcon_maxfailures", "5"),
    ("sim_mapchange_seconds", "0"),
];

/// One line on the console log. Stdout is a pipe to journald in production; each line is flushed at once so
/// the log follows the server live.
pub fn log(line: &str) {
    let mut out = std::io::stdout().lock();
    // A log line that cannot be written (stdout closed) must not take the server down, so errors are dropped.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Logs every line of a command's output.
fn log_output(output: &str) {
    for line in output.lines() {
        log(line);
    }
}

/// The running server: fixed facts from the command line, and the mutable state behind one lock.
pub struct Server {
    pub addr: SocketAddr,
    max_players_arg: u32,
    pub insecure: bool,
    pub steam_ok: bool,
    /// The build's version, as `steam.inf` says at start (srcds reads it once, too).
    pub version: String,
    /// The game's log stream, sent where `logaddress_add` said once `log on` is set.
    log: GameLog,
    state: Mutex<State>,
}

pub struct State {
    cvars: BTreeMap<String, String>,
    pub map: String,
    pub players: u8,
    /// Players A2S leaves out (`sim_a2s_hidden`), as a hibernating server's cached answer or
    /// L4DToolZ can: `status` still lists everyone.
    pub a2s_hidden: u8,
    pub players_since: Instant,
    /// While a map change is simulated, A2S queries go unanswered until this instant.
    pub quiet_until: Option<Instant>,
    pub rcon_failures: HashMap<IpAddr, u32>,
    pub banned: HashSet<IpAddr>,
    /// Where the log goes (`logaddress_add`).
    log_addresses: Vec<SocketAddr>,
}

impl State {
    /// Cvar names are case-insensitive in the Source console.
    pub fn cvar(&self, name: &str) -> Option<&str> {
        self.cvars.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The players A2S reports: all but those it is told to hide.
    pub fn a2s_players(&self) -> u8 {
        self.players.saturating_sub(self.a2s_hidden)
    }

    pub fn cvar_or_empty(&self, name: &str) -> &str {
        self.cvar(name).unwrap_or("")
    }

    pub fn set_cvar(&mut self, name: &str, value: &str) {
        self.cvars.insert(name.to_ascii_lowercase(), value.to_owned());
    }

    pub fn cvars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.cvars.iter().map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

impl Server {
    pub fn new(addr: SocketAddr, max_players_arg: u32, insecure: bool, steam_ok: bool) -> Self {
        let cvars = DEFAULT_CVARS.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        Server {
            addr,
            max_players_arg,
            insecure,
            steam_ok,
            version: patch_version(Path::new(STEAM_INF)),
            log: GameLog::new(addr),
            state: Mutex::new(State {
                cvars,
                map: String::new(),
                players: 0,
                a2s_hidden: 0,
                players_since: Instant::now(),
                quiet_until: None,
                rcon_failures: HashMap::new(),
                banned: HashSet::new(),
                log_addresses: Vec::new(),
            }),
        }
    }

    /// The state, also after a panic in another thread: a half-finished command leaves nothing inconsistent
    /// that matters more than keeping the server up.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Startup after the ports are bound: the command line's +commands, then server.cfg (which therefore wins
    /// over +cvars, as in srcds where it runs at map load), then the map.
    pub fn start(&self, commands: &[Vec<String>], map: Option<&str>) {
        let mut st = self.state();
        for command in commands {
            let mut out = String::new();
            self.run_command(&mut st, command, 0, &mut out);
            log_output(&out);
        }
        self.exec_server_cfg(&mut st);
        let game = std::env::current_dir().unwrap_or_default().join("left4dead2");
        let started = format!(
            "Log file started (file \"logs/L{}.log\") (game \"{}\") (version \"{}\")",
            std::process::id() % 10_000_000,
            game.display(),
            self.version.replace('.', "")
        );
        self.game_log(&st, &started);
        match map {
            Some(map) => {
                let mut out = String::new();
                if !self.load_map(&mut st, map, &mut out) {
                    let _ = writeln!(out, "The server idles without a map until one is loaded (changelevel).");
                }
                log_output(&out);
            }
            None => log("Warning: no map given (+map); the server idles until a map is loaded."),
        }
    }

    /// The number of player slots: `sv_maxplayers` when set (as with the usual slot plugins), else -maxplayers.
    pub fn max_players(&self, st: &State) -> u32 {
        st.cvar("sv_maxplayers").and_then(|value| value.trim().parse().ok()).unwrap_or(self.max_players_arg)
    }

    /// Runs one console line (several commands when separated by `;`) and returns its output.
    pub fn execute(&self, st: &mut State, line: &str) -> String {
        let mut out = String::new();
        self.run_line(st, line, 0, &mut out);
        out
    }

    fn run_line(&self, st: &mut State, line: &str, depth: u32, out: &mut String) {
        for command in tokenize(line) {
            self.run_command(st, &command, depth, out);
        }
    }

    fn run_command(&self, st: &mut State, words: &[String], depth: u32, out: &mut String) {
        let Some((name, args)) = words.split_first() else {
            return;
        };
        let rest = args.join(" ");
        match name.to_ascii_lowercase().as_str() {
            "exec" => match args.first() {
                Some(file) => self.exec(st, file, depth + 1, out),
                None => out.push_str("exec <filename>: execute a script file\n"),
            },
            "echo" => {
                out.push_str(&rest);
                out.push('\n');
            }
            "say" => log(&format!("Console: {rest}")),
            "status" => self.status(st, out),
            "sim_players" => match args.first().map(|n| n.parse::<u8>()) {
                Some(Ok(players)) => {
                    self.players_come_and_go(st, players);
                    st.players = players;
                    st.players_since = Instant::now();
                    let _ = writeln!(out, "sim_players set to {players}");
                }
                _ => out.push_str("Usage: sim_players <0-255>\n"),
            },
            "sim_say" => match (args.first().map(|i| i.parse::<u32>()), args.len() > 1) {
                (Some(Ok(i)), true) if (1..=u32::from(st.players)).contains(&i) => {
                    let said = args[1..].join(" ");
                    self.game_log(st, &format!("{} say \"{said}\"", gamelog::player(i, "Survivor")));
                }
                _ => {
                    let _ = writeln!(out, "Usage: sim_say <player 1-{}> <text>", st.players);
                }
            },
            "logaddress_add" | "logaddress_del" => match args.join("").parse::<SocketAddr>() {
                Ok(to) => {
                    st.log_addresses.retain(|known| *known != to);
                    if name.eq_ignore_ascii_case("logaddress_add") && st.log_addresses.len() < MAX_LOG_ADDRESSES {
                        st.log_addresses.push(to);
                        let _ = writeln!(out, "logaddress_add:  {to}");
                    }
                }
                Err(_) => {
                    let _ = writeln!(out, "{name}:  unparseable address");
                }
            },
            "logaddress_delall" => st.log_addresses.clear(),
            "sim_a2s_hidden" => match args.first().map(|n| n.parse::<u8>()) {
                Some(Ok(hidden)) => {
                    st.a2s_hidden = hidden;
                    let _ = writeln!(out, "sim_a2s_hidden set to {hidden}");
                }
                _ => out.push_str("Usage: sim_a2s_hidden <0-255>\n"),
            },
            "changelevel" | "map" => match args.first() {
                Some(map) => {
                    if self.load_map(st, map, out) {
                        // A map load runs server.cfg again in srcds, undoing cvars set by hand since.
                        self.exec_server_cfg(st);
                    }
                }
                None => {
                    let _ = writeln!(out, "Usage: {name} <map>");
                }
            },
            "cvarlist" => {
                for (cvar, value) in st.cvars() {
                    let _ = writeln!(out, "{cvar:<40} : {value}");
                }
                let _ = writeln!(out, "--------------\n{} total convars", st.cvars.len());
            }
            "quit" | "exit" => {
                log("Server shutting down (quit).");
                std::process::exit(0);
            }
            _ if args.is_empty() => match st.cvar(name) {
                Some(value) => {
                    let _ = writeln!(out, "\"{name}\" = \"{value}\"");
                }
                None => {
                    let _ = writeln!(out, "Unknown command \"{name}\"");
                }
            },
            // Any `name value` sets a cvar: the configs left4me renders may name cvars of plugins srcds
            // would know once they are loaded.
            _ => st.set_cvar(name, &rest),
        }
    }

    /// Sends one line of the game's log, when `log on` is set.
    fn game_log(&self, st: &State, text: &str) {
        let on = matches!(st.cvar_or_empty("log").trim(), "on" | "1");
        self.log.send(on, st.cvar_or_empty("sv_logsecret"), &st.log_addresses, text);
    }

    /// What the log says as the number of players goes from what it is to `players`: each new
    /// one connects and enters the game, the last ones leave first.
    fn players_come_and_go(&self, st: &State, players: u8) {
        let was = u32::from(st.players);
        for i in was + 1..=u32::from(players) {
            let who = gamelog::player(i, "");
            self.game_log(st, &format!("{who} connected, address \"192.0.2.{}:27005\"", i % 250 + 1));
            self.game_log(st, &format!("{who} STEAMAUTH: Client Player {i} received failure code 6"));
            self.game_log(st, &format!("{who} entered the game"));
        }
        for i in (u32::from(players) + 1..=was).rev() {
            self.game_log(st, &format!("{} disconnected (reason \"Disconnect\")", gamelog::player(i, "Survivor")));
        }
    }

    fn exec_server_cfg(&self, st: &mut State) {
        log("Executing dedicated server config file server.cfg");
        let mut out = String::new();
        self.exec(st, "server.cfg", 1, &mut out);
        log_output(&out);
    }

    fn exec(&self, st: &mut State, name: &str, depth: u32, out: &mut String) {
        let file = if name.ends_with(".cfg") { name.to_owned() } else { format!("{name}.cfg") };
        if depth > MAX_EXEC_DEPTH {
            let _ = writeln!(out, "exec {file}: too many nested execs (more than {MAX_EXEC_DEPTH}), skipped");
            return;
        }
        let relative = Path::new(&file);
        if relative.is_absolute() || relative.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            let _ = writeln!(out, "exec: couldn't exec {file}");
            return;
        }
        let text = match std::fs::read(Path::new(CFG_DIR).join(relative)) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let _ = writeln!(out, "exec: couldn't exec {file}");
                return;
            }
            Err(err) => {
                let _ = writeln!(out, "exec: couldn't exec {file}: {err}");
                return;
            }
        };
        for line in text.lines() {
            self.run_line(st, line, depth, out);
        }
    }

    /// Loads a map when its .bsp exists; returns whether it did.
    fn load_map(&self, st: &mut State, map: &str, out: &mut String) -> bool {
        match map_path(map) {
            Some(path) if path.is_file() => {}
            _ => {
                let _ = writeln!(out, "Couldn't find map {map} (map load failed: {map} not found or invalid)");
                return false;
            }
        }
        st.map = map.to_owned();
        let _ = writeln!(out, "Map: {map}");
        self.game_log(st, &format!("Loading map \"{map}\""));
        self.game_log(st, &format!("Started map \"{map}\" (CRC \"-{}\")", map.len() * 7919));
        let gap = st.cvar("sim_mapchange_seconds").and_then(|value| value.trim().parse::<f64>().ok()).unwrap_or(0.0);
        st.quiet_until = match Duration::try_from_secs_f64(gap) {
            Ok(gap) if !gap.is_zero() => Some(Instant::now() + gap),
            _ => None,
        };
        true
    }

    fn status(&self, st: &State, out: &mut String) {
        let public = if self.steam_ok { self.addr.to_string() } else { "n/a".to_owned() };
        let secure = if self.steam_ok && !self.insecure { "secure" } else { "insecure" };
        let _ = writeln!(out, "hostname: {}", st.cvar_or_empty("hostname"));
        let _ = writeln!(out, "version : {} {secure}", self.version);
        let _ = writeln!(out, "udp/ip  : {} [ public {public} ]", self.addr);
        let _ = writeln!(out, "os      : Linux Dedicated");
        let _ = writeln!(out, "map     : {}", st.map);
        let _ = writeln!(
            out,
            "players : {} humans, 0 bots ({} max) (not hibernating) (unreserved)",
            st.players,
            self.max_players(st)
        );
        let _ = writeln!(out, "\n# userid name uniqueid connected ping loss state rate adr");
        let connected = st.players_since.elapsed().as_secs();
        for i in 1..=u32::from(st.players) {
            let _ = writeln!(
                out,
                "# {:>3} {i} \"Player {i}\" STEAM_1:0:{} {:02}:{:02} 40 0 active 30000 192.0.2.{}:27005",
                i + 1,
                1000 + i,
                connected / 60,
                connected % 60,
                i % 250 + 1,
            );
        }
        out.push_str("#end\n");
    }
}

/// The .bsp of a map, when the name is a plain map name (no path tricks).
fn map_path(map: &str) -> Option<PathBuf> {
    let plain = !map.is_empty() && !map.contains(['/', '\\', '\0']) && map != "." && map != "..";
    plain.then(|| Path::new(MAPS_DIR).join(format!("{map}.bsp")))
}

/// Splits a console line into commands (`;`) and words, like the Source console: double quotes group words,
/// `//` outside quotes starts a comment.
pub fn tokenize(line: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // A quoted word ends at the closing quote (or the end of the line) and may be empty.
                for q in chars.by_ref() {
                    if q == '"' {
                        break;
                    }
                    word.push(q);
                }
                in_word = true;
            }
            '/' if chars.peek() == Some(&'/') => break,
            ';' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

/// `PatchVersion=…` of the install's steam.inf, or the default when the file is missing or holds none.
fn patch_version(path: &Path) -> String {
    let mut text = String::new();
    let read = std::fs::File::open(path).and_then(|file| file.take(MAX_STEAM_INF).read_to_string(&mut text));
    let found = read.ok().and_then(|_| {
        text.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            (key.trim().eq_ignore_ascii_case("PatchVersion") && !value.is_empty()).then(|| value.to_owned())
        })
    });
    found.unwrap_or_else(|| DEFAULT_VERSION.to_owned())
}

#[cfg(test)]
mod tests {
    use super::tokenize;

    fn check(line: &str, expected: &[&[&str]]) {
        let expected: Vec<Vec<String>> =
            expected.iter().map(|command| command.iter().map(|word| (*word).to_owned()).collect()).collect();
        assert_eq!(tokenize(line), expected, "tokenizing {line:?}");
    }

    #[test]
    fn tokenizes_like_the_source_console() {
        check("hostname My Server", &[&["hostname", "My", "Server"]]);
        check("hostname \"My // Server\" // comment", &[&["hostname", "My // Server"]]);
        check("  sv_password \"\"", &[&["sv_password", ""]]);
        check("// only a comment", &[]);
        check("echo a; echo b;;", &[&["echo", "a"], &["echo", "b"]]);
        check("say \"a;b\"", &[&["say", "a;b"]]);
        check("exec \"unterminated", &[&["exec", "unterminated"]]);
        check("url http:/x", &[&["url", "http:/x"]]);
    }
}
