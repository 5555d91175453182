//! sim-srcds as a black box: started like srcds in a temporary game root, queried with an A2S client and an
//! RCON client written here from the protocol descriptions (not from the server's code).

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

const SIM_SRCDS: &str = env!("CARGO_BIN_EXE_sim-srcds");

/// The longest any test waits for a process or a server to get somewhere; polls end as soon as it does.
pub(crate) const PATIENCE: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------------------
// Processes

pub(crate) use left4me_sim::free_port;

/// A child process whose output is collected line by line; dropping it kills and reaps the child.
pub(crate) struct Proc {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Proc {
    pub(crate) fn spawn(mut command: Command) -> Proc {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("stdout is piped"), Arc::clone(&stdout)),
            collect(child.stderr.take().expect("stderr is piped"), Arc::clone(&stderr)),
        ];
        Proc { child, stdout, stderr, readers, status: None }
    }

    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pids fit in i32"))
    }

    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().expect("the reader thread does not panic").join("\n")
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().expect("the reader thread does not panic").join("\n")
    }

    /// Waits until stdout has a line containing `needle`; panics with the output when it does not come.
    pub(crate) fn wait_for_stdout(&mut self, needle: &str) {
        self.wait_for_line(&self.stdout, "stdout", needle);
    }

    /// Waits until stderr has a line containing `needle`; panics with the output when it does not come.
    pub(crate) fn wait_for_stderr(&mut self, needle: &str) {
        self.wait_for_line(&self.stderr, "stderr", needle);
    }

    fn wait_for_line(&self, lines: &Mutex<Vec<String>>, stream: &str, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if lines.lock().expect("the reader thread does not panic").iter().any(|line| line.contains(needle)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no line with {needle:?} on {stream}:\nstdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
    }

    /// The exit status, once the process has exited and all its output is read; None if it is still running
    /// after `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status {
                return Some(status);
            }
            if let Some(status) = self.child.try_wait().expect("waiting for our own child") {
                self.status = Some(status);
                for reader in self.readers.drain(..) {
                    reader.join().expect("the reader thread does not panic");
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asserts that the process exits within PATIENCE and returns its status.
    pub(crate) fn exited(&mut self) -> ExitStatus {
        match self.wait_exit(PATIENCE) {
            Some(status) => status,
            None => panic!("the process did not exit; stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Only our own child, by its handle; a child already reaped is left alone.
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(stream: impl Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            lines.lock().expect("only this thread writes").push(line);
        }
    })
}

// ---------------------------------------------------------------------------------------------------------
// A game root and a running sim-srcds

/// A temporary game root (with `left4dead2/cfg` and two maps) and an empty home directory.
pub(crate) struct GameRoot {
    dir: TempDir,
}

impl GameRoot {
    pub(crate) fn new(server_cfg: &str) -> GameRoot {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let root = GameRoot { dir };
        root.write("left4dead2/cfg/server.cfg", server_cfg);
        root.write("left4dead2/maps/c1m1_hotel.bsp", "VBSP");
        root.write("left4dead2/maps/c2m1_highway.bsp", "VBSP");
        fs::create_dir_all(root.home()).expect("creating the home directory");
        root
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub(crate) fn write(&self, relative: &str, content: &str) {
        let path = self.dir.path().join(relative);
        fs::create_dir_all(path.parent().expect("a relative file path has a parent")).expect("creating dirs");
        fs::write(&path, content).unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
    }

    /// sim-srcds started like `srcds_run` starts srcds: in the game root, on loopback, with extra arguments.
    pub(crate) fn command(&self, port: u16, extra: &[&str]) -> Command {
        let mut command = Command::new(SIM_SRCDS);
        command
            .current_dir(self.path())
            .env("HOME", self.home())
            .env_remove("SIM_SRCDS_EXIT_AT_ONCE")
            .args(["-game", "left4dead2", "-norestart", "+ip", "127.0.0.1", "+hostport", &port.to_string()])
            .args(extra);
        command
    }

    pub(crate) fn start(&self, extra: &[&str]) -> Srcds {
        let port = free_port();
        let mut proc = Proc::spawn(self.command(port, extra));
        wait_until_answering(&mut proc, port);
        Srcds { proc, port }
    }
}

pub(crate) struct Srcds {
    pub(crate) proc: Proc,
    pub(crate) port: u16,
}

impl Srcds {
    pub(crate) fn a2s(&self) -> A2s {
        A2s::new(self.port)
    }

    pub(crate) fn rcon(&self, password: &str) -> Rcon {
        let mut rcon = Rcon::connect(self.port).expect("connecting to RCON");
        assert_eq!(rcon.auth(password).expect("an RCON login gets an answer"), rcon.last_id, "login refused");
        rcon
    }
}

/// Polls A2S_INFO until the server answers; panics (with its output) when it exits or never answers.
pub(crate) fn wait_until_answering(proc: &mut Proc, port: u16) -> Info {
    let deadline = Instant::now() + PATIENCE;
    let mut client = A2s::new(port);
    client.timeout(Duration::from_millis(100));
    loop {
        if let Ok(info) = client.info() {
            return info;
        }
        if let Some(status) = proc.wait_exit(Duration::ZERO) {
            panic!("sim-srcds exited with {status}; stdout:\n{}\nstderr:\n{}", proc.stdout(), proc.stderr());
        }
        assert!(Instant::now() < deadline, "no A2S answer on port {port}; stdout:\n{}", proc.stdout());
    }
}

// ---------------------------------------------------------------------------------------------------------
// An A2S client, from developer.valvesoftware.com/wiki/Server_queries

#[derive(Debug)]
pub(crate) struct Info {
    pub(crate) protocol: u8,
    pub(crate) name: String,
    pub(crate) map: String,
    pub(crate) folder: String,
    pub(crate) game: String,
    pub(crate) app_id: u16,
    pub(crate) players: u8,
    pub(crate) max_players: u8,
    pub(crate) bots: u8,
    pub(crate) server_type: u8,
    pub(crate) environment: u8,
    pub(crate) visibility: u8,
    pub(crate) vac: u8,
    pub(crate) version: String,
    pub(crate) port: Option<u16>,
    pub(crate) keywords: Option<String>,
    pub(crate) game_id: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct Player {
    pub(crate) index: u8,
    pub(crate) name: String,
    pub(crate) score: i32,
    pub(crate) duration: f32,
}

pub(crate) struct A2s {
    socket: UdpSocket,
    /// How many datagrams the last reply came in (1 unless it was split).
    pub(crate) last_packets: usize,
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl A2s {
    pub(crate) fn new(port: u16) -> A2s {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("binding a client UDP socket");
        socket.connect(("127.0.0.1", port)).expect("connecting a UDP socket");
        let mut client = A2s { socket, last_packets: 0 };
        client.timeout(Duration::from_secs(2));
        client
    }

    pub(crate) fn timeout(&mut self, timeout: Duration) {
        self.socket.set_read_timeout(Some(timeout)).expect("setting a read timeout");
    }

    pub(crate) fn send(&self, packet: &[u8]) {
        self.socket.send(packet).expect("sending a datagram to loopback");
    }

    /// Sends a request (the type byte and what follows) and returns the reply from its type byte on.
    pub(crate) fn request(&mut self, request: &[u8]) -> io::Result<Vec<u8>> {
        let mut packet = vec![0xFF; 4];
        packet.extend_from_slice(request);
        self.send(&packet);
        self.receive()
    }

    /// One reply, reassembled when split, without its `FF FF FF FF` header.
    pub(crate) fn receive(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = [0u8; 2048];
        let mut parts: HashMap<u8, Vec<u8>> = HashMap::new();
        let mut split: Option<(i32, u8)> = None;
        loop {
            let len = self.socket.recv(&mut buf)?;
            let packet = &buf[..len];
            let mut r = Reader::new(packet);
            match r.i32()? {
                -1 => {
                    if split.is_some() {
                        return Err(invalid("a whole reply in the middle of a split one"));
                    }
                    self.last_packets = 1;
                    return Ok(r.rest().to_vec());
                }
                -2 => {
                    let id = r.i32()?;
                    let total = r.u8()?;
                    let number = r.u8()?;
                    let size = r.u16()?;
                    if id < 0 {
                        return Err(invalid("compressed split replies are not expected from Source"));
                    }
                    if size != 1248 {
                        return Err(invalid(format!("split size field {size}, expected 1248")));
                    }
                    if *split.get_or_insert((id, total)) != (id, total) || number >= total {
                        return Err(invalid(format!("split packet {number}/{total} of reply {id} does not fit")));
                    }
                    parts.insert(number, r.rest().to_vec());
                    if parts.len() == usize::from(total) {
                        let whole: Vec<u8> = (0..total).flat_map(|n| parts.remove(&n).unwrap_or_default()).collect();
                        let body = whole
                            .strip_prefix(&[0xFF; 4])
                            .ok_or_else(|| invalid("a reassembled reply must start with FF FF FF FF"))?;
                        self.last_packets = usize::from(total);
                        return Ok(body.to_vec());
                    }
                }
                other => return Err(invalid(format!("unknown reply header {other:#x}"))),
            }
        }
    }

    /// A2S_INFO, going through the challenge dance as often as the server asks.
    pub(crate) fn info(&mut self) -> io::Result<Info> {
        let mut request = b"TSource Engine Query\0".to_vec();
        for _ in 0..5 {
            let reply = self.request(&request)?;
            match reply.first() {
                Some(0x41) => {
                    request.truncate(21);
                    request.extend_from_slice(reply.get(1..5).ok_or_else(|| invalid("short challenge"))?);
                }
                Some(0x49) => return parse_info(&reply[1..]),
                _ => return Err(invalid(format!("unexpected A2S_INFO reply {reply:x?}"))),
            }
        }
        Err(invalid("the challenge dance did not end"))
    }

    /// A request that needs a challenge: first with -1 to get one, then with it.
    fn challenged(&mut self, kind: u8, expected: u8) -> io::Result<Vec<u8>> {
        let reply = self.request(&[kind, 0xFF, 0xFF, 0xFF, 0xFF])?;
        if reply.first() != Some(&0x41) || reply.len() != 5 {
            return Err(invalid(format!("expected a challenge, got {reply:x?}")));
        }
        let reply = self.request(&[&[kind][..], &reply[1..5]].concat())?;
        if reply.first() != Some(&expected) {
            return Err(invalid(format!("expected reply type {expected:#x}, got {reply:x?}")));
        }
        Ok(reply[1..].to_vec())
    }

    pub(crate) fn players(&mut self) -> io::Result<Vec<Player>> {
        let reply = self.challenged(0x55, 0x44)?;
        let mut r = Reader::new(&reply);
        let count = r.u8()?;
        let players = (0..count)
            .map(|_| Ok(Player { index: r.u8()?, name: r.string()?, score: r.i32()?, duration: r.f32()? }))
            .collect::<io::Result<Vec<_>>>()?;
        r.end()?;
        Ok(players)
    }

    pub(crate) fn rules(&mut self) -> io::Result<Vec<(String, String)>> {
        let reply = self.challenged(0x56, 0x45)?;
        let mut r = Reader::new(&reply);
        let count = r.u16()?;
        let rules = (0..count).map(|_| Ok((r.string()?, r.string()?))).collect::<io::Result<Vec<_>>>()?;
        r.end()?;
        Ok(rules)
    }
}

fn parse_info(body: &[u8]) -> io::Result<Info> {
    let mut r = Reader::new(body);
    let mut info = Info {
        protocol: r.u8()?,
        name: r.string()?,
        map: r.string()?,
        folder: r.string()?,
        game: r.string()?,
        app_id: r.u16()?,
        players: r.u8()?,
        max_players: r.u8()?,
        bots: r.u8()?,
        server_type: r.u8()?,
        environment: r.u8()?,
        visibility: r.u8()?,
        vac: r.u8()?,
        version: r.string()?,
        port: None,
        keywords: None,
        game_id: None,
    };
    if r.rest().is_empty() {
        return Ok(info);
    }
    let edf = r.u8()?;
    if edf & 0x80 != 0 {
        info.port = Some(r.u16()?);
    }
    if edf & 0x10 != 0 {
        r.u64()?;
    }
    if edf & 0x40 != 0 {
        r.u16()?;
        r.string()?;
    }
    if edf & 0x20 != 0 {
        info.keywords = Some(r.string()?);
    }
    if edf & 0x01 != 0 {
        info.game_id = Some(r.u64()?);
    }
    r.end()?;
    Ok(info)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>().ok_or_else(|| invalid("reply too short"))?;
        self.bytes = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_le_bytes(self.take()?))
    }

    fn i32(&mut self) -> io::Result<i32> {
        Ok(i32::from_le_bytes(self.take()?))
    }

    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    fn f32(&mut self) -> io::Result<f32> {
        Ok(f32::from_le_bytes(self.take()?))
    }

    fn string(&mut self) -> io::Result<String> {
        let end = self.bytes.iter().position(|&b| b == 0).ok_or_else(|| invalid("unterminated string"))?;
        let string = String::from_utf8(self.bytes[..end].to_vec()).map_err(|err| invalid(err.to_string()))?;
        self.bytes = &self.bytes[end + 1..];
        Ok(string)
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    fn end(&self) -> io::Result<()> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(invalid(format!("{n} bytes left over"))),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// An RCON client, from developer.valvesoftware.com/wiki/Source_RCON_Protocol

const AUTH: i32 = 3;
const AUTH_RESPONSE: i32 = 2;
const EXECCOMMAND: i32 = 2;
const RESPONSE_VALUE: i32 = 0;

pub(crate) struct Rcon {
    stream: TcpStream,
    last_id: i32,
}

impl Rcon {
    pub(crate) fn connect(port: u16) -> io::Result<Rcon> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(PATIENCE))?;
        Ok(Rcon { stream, last_id: 100 })
    }

    fn next_id(&mut self) -> i32 {
        self.last_id += 1;
        self.last_id
    }

    pub(crate) fn send(&mut self, id: i32, kind: i32, body: &[u8]) -> io::Result<()> {
        let size = i32::try_from(body.len() + 10).expect("test bodies are small");
        let mut packet = Vec::new();
        for field in [size, id, kind] {
            packet.extend_from_slice(&field.to_le_bytes());
        }
        packet.extend_from_slice(body);
        packet.extend_from_slice(&[0, 0]);
        self.stream.write_all(&packet)
    }

    /// One packet: (id, type, body without the two trailing NULs).
    pub(crate) fn receive(&mut self) -> io::Result<(i32, i32, Vec<u8>)> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = i32::from_le_bytes(size);
        if !(10..=4096).contains(&size) {
            return Err(invalid(format!("packet size {size} out of range")));
        }
        let mut data = vec![0u8; usize::try_from(size).expect("checked positive")];
        self.stream.read_exact(&mut data)?;
        if !data.ends_with(&[0, 0]) {
            return Err(invalid("a packet must end with two NULs"));
        }
        let id = i32::from_le_bytes(data[0..4].try_into().expect("4 bytes"));
        let kind = i32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
        Ok((id, kind, data[8..data.len() - 2].to_vec()))
    }

    /// Logs in; returns the id of the AUTH_RESPONSE (the request's id on success, -1 on failure).
    pub(crate) fn auth(&mut self, password: &str) -> io::Result<i32> {
        let id = self.next_id();
        self.send(id, AUTH, password.as_bytes())?;
        let (first_id, first_kind, first_body) = self.receive()?;
        assert_eq!((first_id, first_kind, first_body.as_slice()), (id, RESPONSE_VALUE, &b""[..]));
        let (auth_id, kind, body) = self.receive()?;
        assert_eq!((kind, body.as_slice()), (AUTH_RESPONSE, &b""[..]));
        Ok(auth_id)
    }

    /// Runs a command; returns its output and how many packets carried it. The end of the output is found
    /// with the usual trick: an empty RESPONSE_VALUE sent after the command comes back, followed by srcds's
    /// `00 01 00 00` packet.
    pub(crate) fn exec(&mut self, command: &str) -> io::Result<(String, usize)> {
        let id = self.next_id();
        let marker = self.next_id();
        self.send(id, EXECCOMMAND, command.as_bytes())?;
        self.send(marker, RESPONSE_VALUE, b"")?;
        let mut output = Vec::new();
        let mut packets = 0;
        loop {
            let (got, kind, body) = self.receive()?;
            assert_eq!(kind, RESPONSE_VALUE, "responses are RESPONSE_VALUE packets");
            if got == marker {
                assert!(body.is_empty(), "the mirrored marker is empty");
                let (after, kind, body) = self.receive()?;
                assert_eq!((after, kind, body.as_slice()), (marker, RESPONSE_VALUE, &[0u8, 1, 0, 0][..]));
                return Ok((String::from_utf8_lossy(&output).into_owned(), packets));
            }
            assert_eq!(got, id, "a response carries its command's id");
            output.extend_from_slice(&body);
            packets += 1;
        }
    }

    /// Whether the server closed the connection (rather than just staying silent).
    pub(crate) fn is_closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(err) => matches!(err.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The tests

const PASSWORD: &str = "s3cret pass";

fn cfg_with_password(extra: &str) -> String {
    format!("rcon_password \"{PASSWORD}\"\n{extra}")
}

#[test]
fn a2s_info_challenge_dance_and_fields() {
    let root =
        GameRoot::new(&cfg_with_password("// the hostname comes from an exec'd file\nexec hostname\nexec missing"));
    root.write("left4dead2/cfg/hostname.cfg", "hostname \"Sim // Server\" // trailing comment\n");
    let server = root.start(&["-tickrate", "100", "+map", "c1m1_hotel", "-maxplayers", "8", "+hostname", "argv loses"]);

    let mut a2s = server.a2s();
    let request = b"TSource Engine Query\0";
    let challenge = a2s.request(request).expect("a challenge");
    assert_eq!(challenge.len(), 5);
    assert_eq!(challenge[0], 0x41, "a request without challenge gets one");
    let wrong = [&request[..], &[challenge[1] ^ 0xFF, challenge[2], challenge[3], challenge[4]]].concat();
    assert_eq!(a2s.request(&wrong).expect("an answer to a wrong challenge")[0], 0x41);
    let right = [&request[..], &challenge[1..5]].concat();
    let reply = a2s.request(&right).expect("the info reply");
    assert_eq!(reply[0], 0x49);

    let info = parse_info(&reply[1..]).expect("a well-formed info reply");
    assert_eq!(info.protocol, 17);
    assert_eq!(info.name, "Sim // Server", "server.cfg (via exec) wins over +hostname");
    assert_eq!(info.map, "c1m1_hotel");
    assert_eq!((info.folder.as_str(), info.game.as_str(), info.app_id), ("left4dead2", "Left 4 Dead 2", 550));
    assert_eq!((info.players, info.max_players, info.bots), (0, 8, 0));
    assert_eq!((info.server_type, info.environment, info.visibility, info.vac), (b'd', b'l', 0, 1));
    assert_eq!(info.version, "2.2.4.3");
    assert_eq!(info.port, Some(server.port));
    assert_eq!(info.keywords.as_deref(), Some("coop,empty"));
    assert_eq!(info.game_id, Some(550));

    let mut rcon = server.rcon(PASSWORD);
    let (output, _) = rcon.exec("sim_players 3").expect("sim_players runs");
    assert_eq!(output, "sim_players set to 3\n");
    let info = a2s.info().expect("info after sim_players");
    assert_eq!((info.players, info.keywords.as_deref()), (3, Some("coop")));

    let mut proc = server.proc;
    proc.wait_for_stdout("exec: couldn't exec missing.cfg");
    proc.wait_for_stdout("Map: c1m1_hotel");
    proc.wait_for_stdout("[S_API FAIL] SteamAPI_Init() failed; SteamAPI_IsSteamRunning() failed.");
    proc.wait_for_stdout("rcon from \"127.0.0.1:");
    proc.wait_for_stdout("\": command \"sim_players 3\"");
}

#[test]
fn the_version_is_the_installed_builds_patch_version() {
    let root = GameRoot::new(&cfg_with_password(""));
    root.write(
        "left4dead2/steam.inf",
        "ClientVersion=2243\nServerVersion=2243\nPatchVersion=2.2.4.16046151\nProductName=left4dead2\nappID=550\n",
    );
    let server = root.start(&["+map", "c1m1_hotel"]);
    assert_eq!(server.a2s().info().expect("info").version, "2.2.4.16046151");
    let (status, _) = server.rcon(PASSWORD).exec("status").expect("status");
    assert!(status.contains("version : 2.2.4.16046151 "), "{status}");

    let without = GameRoot::new(&cfg_with_password(""));
    without.write("left4dead2/steam.inf", "ProductName=left4dead2\nappID=550\n");
    let server = without.start(&["+map", "c1m1_hotel"]);
    assert_eq!(server.a2s().info().expect("info").version, "2.2.4.3", "no PatchVersion: the default");
}

#[test]
fn a2s_player_lists_the_simulated_players() {
    let root = GameRoot::new(&cfg_with_password(""));
    let server = root.start(&["+map", "c1m1_hotel"]);
    let mut a2s = server.a2s();
    assert!(a2s.players().expect("players").is_empty());

    server.rcon(PASSWORD).exec("sim_players 2").expect("sim_players runs");
    let players = a2s.players().expect("players");
    let names: Vec<&str> = players.iter().map(|player| player.name.as_str()).collect();
    assert_eq!(names, ["Player 1", "Player 2"]);
    assert_eq!(players.iter().map(|player| player.index).collect::<Vec<_>>(), [0, 1]);
    assert!(players.iter().all(|player| player.score == 0 && player.duration >= 0.0));

    let (status, _) = server.rcon(PASSWORD).exec("status").expect("status");
    assert!(status.contains("players : 2 humans, 0 bots (4 max)"), "{status}");
    assert!(status.contains("\"Player 2\""), "{status}");
    assert!(status.contains("map     : c1m1_hotel"), "{status}");
}

/// Enough cvars that A2S_RULES and `cvarlist` need several packets.
fn many_cvars() -> String {
    (0..200).map(|i| format!("sim_fill_{i:03} \"value {i:03} of a long enough cvar to fill packets\"\n")).collect()
}

#[test]
fn a2s_rules_are_split_and_never_show_the_rcon_password() {
    let root = GameRoot::new(&cfg_with_password("sv_password joinme\nexec many\n"));
    root.write("left4dead2/cfg/many.cfg", &many_cvars());
    let server = root.start(&["+map", "c1m1_hotel"]);
    let mut a2s = server.a2s();
    let rules: HashMap<String, String> = a2s.rules().expect("rules").into_iter().collect();
    assert!(a2s.last_packets > 1, "the rules reply should have been split, came in {} packet", a2s.last_packets);
    for i in 0..200 {
        assert_eq!(rules[&format!("sim_fill_{i:03}")], format!("value {i:03} of a long enough cvar to fill packets"));
    }
    assert_eq!(rules["hostname"], "Left 4 Dead 2");
    assert!(!rules.contains_key("rcon_password"));
    assert!(!rules.values().any(|value| value.contains(PASSWORD) || value == "joinme"), "a password leaked");
    assert_eq!(a2s.info().expect("info").visibility, 1, "sv_password makes the server private");
}

#[test]
fn garbage_is_ignored() {
    let root = GameRoot::new("");
    let server = root.start(&["+map", "c1m1_hotel"]);
    let mut a2s = server.a2s();
    a2s.timeout(Duration::from_millis(300));
    for garbage in [&b"hello"[..], &[0xFF, 0xFF, 0xFF], &[0xFF, 0xFF, 0xFF, 0xFF, 0x54, b'x'], &[0xFF; 4], &[0xFE; 20]]
    {
        a2s.send(garbage);
        let err = a2s.receive().expect_err("garbage gets no reply");
        assert!(matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut), "{err}");
    }
    assert_eq!(a2s.info().expect("info still works").map, "c1m1_hotel");
}

#[test]
fn rcon_login_commands_and_long_responses() {
    let root = GameRoot::new(&cfg_with_password("exec many\n"));
    root.write("left4dead2/cfg/many.cfg", &many_cvars());
    let server = root.start(&["+map", "c1m1_hotel"]);

    let mut rcon = Rcon::connect(server.port).expect("connecting");
    assert_eq!(rcon.auth("wrong").expect("an answer"), -1);
    let id = rcon.last_id + 1;
    assert_eq!(rcon.auth(PASSWORD).expect("an answer"), id);

    let (output, packets) = rcon.exec("cvarlist").expect("cvarlist");
    assert!(output.len() > 4096 && packets > 1, "{} bytes in {packets} packets", output.len());
    for i in 0..200 {
        assert!(output.contains(&format!("sim_fill_{i:03}")), "cvarlist lacks sim_fill_{i:03}");
    }
    assert_eq!(rcon.exec("nosuchcommand").expect("an answer").0, "Unknown command \"nosuchcommand\"\n");
    assert_eq!(rcon.exec("echo hello there").expect("echo").0, "hello there\n");
    assert_eq!(rcon.exec("hostname").expect("a cvar").0, "\"hostname\" = \"Left 4 Dead 2\"\n");
    assert_eq!(rcon.exec("hostname Renamed by rcon").expect("set").0, "");
    assert_eq!(rcon.exec("say hi all").expect("say").0, "");
    assert_eq!(server.a2s().info().expect("info").name, "Renamed by rcon");

    let mut proc = server.proc;
    proc.wait_for_stdout("Console: hi all");
    proc.wait_for_stdout("command \"cvarlist\"");
}

#[test]
fn rcon_refuses_everything_without_a_password_and_commands_before_login() {
    let root = GameRoot::new("");
    let server = root.start(&["+map", "c1m1_hotel"]);
    let mut rcon = Rcon::connect(server.port).expect("connecting");
    assert_eq!(rcon.auth("").expect("an answer"), -1, "an empty rcon_password refuses every login");
    assert_eq!(rcon.auth("anything").expect("an answer"), -1);

    let mut rcon = Rcon::connect(server.port).expect("connecting");
    rcon.send(1, EXECCOMMAND, b"status").expect("sending");
    assert!(rcon.is_closed_by_server(), "a command before login closes the connection");

    for size in [5i32, 9, 4097, -1] {
        let mut rcon = Rcon::connect(server.port).expect("connecting");
        rcon.stream.write_all(&size.to_le_bytes()).expect("sending a size");
        rcon.stream.write_all(&[0u8; 16]).expect("sending some bytes");
        assert!(rcon.is_closed_by_server(), "a packet of size {size} closes the connection");
    }
}

#[test]
fn rcon_bans_after_five_failed_logins() {
    let root = GameRoot::new(&cfg_with_password(""));
    let server = root.start(&["+map", "c1m1_hotel"]);
    let mut rcon = Rcon::connect(server.port).expect("connecting");
    for _ in 0..5 {
        assert_eq!(rcon.auth("guess").expect("an answer"), -1);
    }
    assert!(rcon.is_closed_by_server(), "the fifth failure ends the connection");

    let mut again = Rcon::connect(server.port).expect("the kernel still accepts the connection");
    assert!(again.is_closed_by_server(), "a banned address is closed at once");
    let mut proc = server.proc;
    proc.wait_for_stdout("Banning 127.0.0.1 for rcon hacking attempts");
    // A2S is not affected by the RCON ban.
    assert_eq!(wait_until_answering(&mut proc, server.port).map, "c1m1_hotel");
}

#[test]
fn changelevel_checks_the_map_and_can_go_quiet() {
    let root = GameRoot::new(&cfg_with_password("sim_mapchange_seconds 2\nhostname \"from server.cfg\"\n"));
    let server = root.start(&["+map", "c1m1_hotel"]);
    let mut rcon = server.rcon(PASSWORD);

    let (output, _) = rcon.exec("changelevel c9m9_nowhere").expect("changelevel");
    assert!(output.contains("Couldn't find map c9m9_nowhere"), "{output}");
    assert_eq!(server.a2s().info().expect("info").map, "c1m1_hotel");

    rcon.exec("hostname set by hand").expect("set");
    assert_eq!(rcon.exec("changelevel c2m1_highway").expect("changelevel").0, "Map: c2m1_highway\n");
    let mut a2s = server.a2s();
    a2s.timeout(Duration::from_millis(300));
    assert!(a2s.info().is_err(), "no A2S answer while the map changes");
    let mut proc = server.proc;
    let info = wait_until_answering(&mut proc, server.port);
    assert_eq!(info.map, "c2m1_highway");
    assert_eq!(info.name, "from server.cfg", "a map load runs server.cfg again, as srcds does");
}

#[test]
fn missing_map_keeps_the_server_up() {
    let root = GameRoot::new("");
    let mut server = root.start(&["+map", "c1m9_nothere"]);
    assert_eq!(server.a2s().info().expect("info").map, "");
    server.proc.wait_for_stdout("Couldn't find map c1m9_nothere");
}

#[test]
fn it_says_on_stderr_once_it_answers_queries() {
    let root = GameRoot::new("");
    let port = free_port();
    let mut proc = Proc::spawn(root.command(port, &["+map", "c1m1_hotel"]));
    proc.wait_for_stderr(&format!("sim-srcds: answering A2S queries on 127.0.0.1:{port}"));
    // Once said, a query is answered: the line marks a finished start.
    let info = A2s::new(port).info().expect("an answer to the first query after the line");
    assert_eq!(info.map, "c1m1_hotel");
}

#[test]
fn steam_connection_when_steamclient_is_linked() {
    let root = GameRoot::new("");
    root.write("home/.steam/sdk32/steamclient.so", "placeholder");
    let mut server = root.start(&["+map", "c1m1_hotel"]);
    server.proc.wait_for_stdout("Connection to Steam servers successful.");
    assert!(!server.proc.stdout().contains("S_API FAIL"));
}

#[test]
fn sigint_and_sigterm_exit_cleanly() {
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let root = GameRoot::new("");
        let mut server = root.start(&["+map", "c1m1_hotel"]);
        kill(server.proc.pid(), signal).expect("signalling our own child");
        let status = server.proc.exited();
        assert_eq!(status.code(), Some(0), "{signal} should exit 0; stdout:\n{}", server.proc.stdout());
        assert!(server.proc.stdout().contains("shutting down"), "{}", server.proc.stdout());
    }
}

#[test]
fn a_taken_port_fails_at_once() {
    let root = GameRoot::new("");
    let port = free_port();
    let udp = UdpSocket::bind(("127.0.0.1", port)).expect("taking the UDP port");
    let mut proc = Proc::spawn(root.command(port, &["+map", "c1m1_hotel"]));
    let status = proc.exited();
    assert!(!status.success(), "sim-srcds should fail on a taken UDP port");
    assert!(proc.stderr().contains(&format!("127.0.0.1:{port}")), "{}", proc.stderr());
    drop(udp);

    let port = free_port();
    let _tcp = TcpListener::bind(("127.0.0.1", port)).expect("taking the TCP port");
    let mut proc = Proc::spawn(root.command(port, &["+map", "c1m1_hotel"]));
    let status = proc.exited();
    assert!(!status.success(), "sim-srcds should fail on a taken TCP port");
    assert!(proc.stderr().contains(&format!("TCP 127.0.0.1:{port}")), "{}", proc.stderr());
}

#[test]
fn exit_at_once_knob_and_wrong_game() {
    let root = GameRoot::new("");
    let mut command = root.command(free_port(), &["+map", "c1m1_hotel"]);
    command.env("SIM_SRCDS_EXIT_AT_ONCE", "3");
    assert_eq!(Proc::spawn(command).exited().code(), Some(3));

    let mut command = Command::new(SIM_SRCDS);
    command.current_dir(root.path()).args(["-game", "cstrike", "+hostport", &free_port().to_string()]);
    let mut proc = Proc::spawn(command);
    assert_eq!(proc.exited().code(), Some(1));
    assert!(proc.stderr().contains("cstrike"), "{}", proc.stderr());
}

/// The log packets that arrive on `socket` until `until` is among them (or PATIENCE passes).
fn log_packets(socket: &UdpSocket, until: &str) -> Vec<Vec<u8>> {
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("a timeout");
    let (deadline, mut packets, mut buf) = (Instant::now() + PATIENCE, Vec::new(), [0u8; 2048]);
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            packets.push(buf[..n].to_vec());
            if String::from_utf8_lossy(&buf[..n]).contains(until) {
                return packets;
            }
        }
    }
    let seen: Vec<String> = packets.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    panic!("no log packet with {until:?} came; these did: {seen:#?}");
}

#[test]
fn the_game_log_goes_where_logaddress_add_says_signed_with_sv_logsecret() {
    let listener = UdpSocket::bind("127.0.0.1:0").expect("a socket");
    let to = listener.local_addr().expect("an address");
    let root = GameRoot::new(&cfg_with_password(&format!("log on\nsv_logsecret 123456789\nlogaddress_add {to}\n")));
    let server = root.start(&["+map", "c1m1_hotel"]);
    let started = log_packets(&listener, "Started map \"c1m1_hotel\"");
    let first = String::from_utf8_lossy(&started[0]).into_owned();
    assert!(started[0].starts_with(b"\xff\xff\xff\xffS123456789L ") && started[0].ends_with(b"\n\0"));
    assert!(first.contains(": Log file started (file \"logs/L"), "{first:?}");

    let mut rcon = Rcon::connect(server.port).expect("connecting");
    rcon.auth(PASSWORD).expect("an answer");
    rcon.exec("sim_players 2").expect("sim_players");
    let joined: Vec<String> = log_packets(&listener, "\"Player 2<3><STEAM_1:0:1002><>\" entered the game")
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert!(
        joined.iter().any(|p| p.contains("\"Player 1<2><STEAM_1:0:1001><>\" connected, address \"")),
        "{joined:#?}"
    );
    assert_eq!(rcon.exec("sim_say 3 nobody").expect("an answer").0, "Usage: sim_say <player 1-2> <text>\n");
    rcon.exec("sim_say 2 hello there").expect("sim_say");
    log_packets(&listener, "\"Player 2<3><STEAM_1:0:1002><Survivor>\" say \"hello there\"");
    rcon.exec("sim_players 1").expect("sim_players");
    log_packets(&listener, "\"Player 2<3><STEAM_1:0:1002><Survivor>\" disconnected (reason \"Disconnect\")");
    // Without a secret the packets are of type R; with the log off, none is sent.
    rcon.exec("sv_logsecret 0").expect("sv_logsecret");
    rcon.exec("sim_say 1 unsigned").expect("sim_say");
    let unsigned = log_packets(&listener, "say \"unsigned\"");
    assert!(unsigned.last().expect("a packet").starts_with(b"\xff\xff\xff\xffRL "));
    rcon.exec("log off").expect("log off");
    rcon.exec("sim_say 1 unheard").expect("sim_say");
    rcon.exec("log on").expect("log on");
    rcon.exec("sim_say 1 heard").expect("sim_say");
    let after = log_packets(&listener, "say \"heard\"");
    assert!(!after.iter().any(|p| String::from_utf8_lossy(p).contains("unheard")));
}
