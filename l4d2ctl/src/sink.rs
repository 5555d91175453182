//! Where a write's words go: each line plainly, or under `--json` as one [`Message`] per line,
//! so that no command branches on `--json` itself.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

use l4d2ctl::Error;
use l4d2ctl::api::{Message, Outcome};
use left4me_state::Name;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// How long the end of a write waits for the last lines its children wrote: they have ended by
/// then, so their lines are in the pipe already; only a grandchild that kept the pipe open (and
/// is no part of the write) could keep it waiting longer.
const CHILDREN_DRAIN: Duration = Duration::from_secs(2);

/// The longest line a child's output is sent on as: a recipe that prints without a line break
/// must not grow l4d2ctl (root, outside the build's memory limit) or its caller's reader without
/// bound, so a longer run is sent on in pieces of this size.
const MAX_CHILD_LINE: usize = 64 * 1024;

/// The output of one command.
pub struct Out {
    messages: Option<Messages>,
}

/// Under `--json`: the messages' own stdout and, where the command's children write to fd 1, what
/// sends their lines on.
struct Messages {
    lines: Arc<Mutex<Lines>>,
    /// Reports when the children's pipe has been read to its end.
    children: Option<mpsc::Receiver<()>>,
}

/// The one writer of messages. A child's output (steamcmd, a build's log) comes through a pipe
/// on fd 1 and is sent on as `Progress` lines, as its plain run shows it on stdout, so messages
/// are all stdout holds and a caller keeps those lines where they were. Whoever writes a message
/// first sends on what the pipe holds, under one lock: a line l4d2ctl says after a child ended
/// comes after that child's lines, as in its plain run.
struct Lines {
    stdout: File,
    /// The pipe's read end (non-blocking), none when the command's children do not write to it.
    pipe: Option<File>,
    /// A child's line read only in part.
    partial: Vec<u8>,
}

impl Out {
    pub fn plain() -> Out {
        Out { messages: None }
    }

    /// JSON Lines on stdout, fd 1 made a pipe whose lines become messages — or, with
    /// `forward_children` false, a copy of stderr, for a command that starts no child and must
    /// stay one thread (entering PID 1's mount namespace is refused to a process of several).
    pub fn json_lines(forward_children: bool) -> Result<Out, Error> {
        let fail = |e: nix::Error| Error::io("stdout", e.into());
        let stdout = File::from(std::io::stdout().as_fd().try_clone_to_owned().map_err(|e| Error::io("stdout", e))?);
        if !forward_children {
            nix::unistd::dup2_stdout(std::io::stderr()).map_err(fail)?;
            let lines = Lines { stdout, pipe: None, partial: Vec::new() };
            return Ok(Out { messages: Some(Messages { lines: Arc::new(Mutex::new(lines)), children: None }) });
        }
        // The read end is close-on-exec, so no child holds it, and non-blocking, so a writer
        // takes what it holds without waiting; fd 1, the write end's copy, is every child's
        // stdout and blocks as a pipe does.
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(fail)?;
        fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(fail)?;
        nix::unistd::dup2_stdout(&write).map_err(fail)?;
        drop(write);
        let watched = read.try_clone().map_err(|e| Error::io("stdout", e))?;
        let lines = Arc::new(Mutex::new(Lines { stdout, pipe: Some(File::from(read)), partial: Vec::new() }));
        let (done, children) = mpsc::channel();
        let forwarder = Arc::clone(&lines);
        std::thread::spawn(move || forward(&watched, &forwarder, &done));
        Ok(Out { messages: Some(Messages { lines, children: Some(children) }) })
    }

    /// A line about the host or an overlay.
    pub fn say(&mut self, text: impl Into<String>) {
        self.line(None, text.into());
    }

    /// A line about one server.
    pub fn about(&mut self, server: &Name, text: impl Into<String>) {
        self.line(Some(server), text.into());
    }

    /// The write ran to its end.
    pub fn done(&mut self, outcome: Outcome) {
        self.last(&Message::Done { outcome });
    }

    /// The write failed as a whole (its `l4d2ctl: …` line goes to stderr as well).
    pub fn failed(&mut self, error: &Error) {
        self.last(&Message::Failed { failure: error.failure() });
    }

    fn line(&mut self, server: Option<&Name>, text: String) {
        match &self.messages {
            Some(messages) => {
                let mut lines = lock(&messages.lines);
                lines.send_children_lines(false);
                lines.write(&Message::Progress { server: server.cloned(), text });
            }
            None => println!("{text}"),
        }
    }

    /// The last message, after every line the children wrote.
    fn last(&mut self, message: &Message) {
        let Some(messages) = &mut self.messages else { return };
        if let Some(children) = messages.children.take() {
            // fd 1 becomes stderr's copy, closing this process's end of the pipe: once the
            // children's ends are closed too, the forwarder reads it to its end and says so.
            let _ = std::io::stdout().flush();
            if nix::unistd::dup2_stdout(std::io::stderr()).is_ok() {
                let _ = children.recv_timeout(CHILDREN_DRAIN);
            }
        }
        let mut lines = lock(&messages.lines);
        lines.send_children_lines(false);
        // Whatever a grandchild writes later is no part of this write: the last message stays last.
        lines.pipe = None;
        lines.write(message);
    }
}

/// Sends the children's lines on as they come, until the pipe's last writer has closed it.
fn forward(watched: &OwnedFd, lines: &Mutex<Lines>, done: &mpsc::Sender<()>) {
    loop {
        let mut fds = [PollFd::new(watched.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => break,
        }
        if lock(lines).send_children_lines(true) {
            break;
        }
    }
    let _ = done.send(());
}

fn lock(lines: &Mutex<Lines>) -> MutexGuard<'_, Lines> {
    lines.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Lines {
    /// Sends on every whole line the pipe holds now; at its end (every writer gone), the line
    /// left unfinished too — and, with `to_its_end`, says whether the end was reached.
    fn send_children_lines(&mut self, to_its_end: bool) -> bool {
        let Some(pipe) = &mut self.pipe else { return true };
        let mut ended = false;
        let mut buffer = [0u8; 8192];
        loop {
            match pipe.read(&mut buffer) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => self.partial.extend_from_slice(&buffer[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        loop {
            match self.partial.iter().take(MAX_CHILD_LINE + 1).position(|b| *b == b'\n') {
                Some(end) => {
                    let line: Vec<u8> = self.partial.drain(..=end).collect();
                    self.write_child_line(&line[..end]);
                }
                None if self.partial.len() > MAX_CHILD_LINE => {
                    // Cut before a character's continuation bytes, so each piece reads whole.
                    let cut = (MAX_CHILD_LINE - 3..=MAX_CHILD_LINE)
                        .rev()
                        .find(|at| self.partial[*at] & 0b1100_0000 != 0b1000_0000)
                        .unwrap_or(MAX_CHILD_LINE);
                    let piece: Vec<u8> = self.partial.drain(..cut).collect();
                    self.write_child_line(&piece);
                }
                None => break,
            }
        }
        if ended {
            let rest = std::mem::take(&mut self.partial);
            if !rest.is_empty() {
                self.write_child_line(&rest);
            }
            self.pipe = None;
        }
        ended || !to_its_end
    }

    fn write_child_line(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line).into_owned();
        self.write(&Message::Progress { server: None, text });
    }

    /// One message, one line, written whole.
    fn write(&mut self, message: &Message) {
        let mut line = serde_json::to_string(message).expect("a message always serializes");
        line.push('\n');
        // A reader gone away is no reason to stop the write half-way: its effect stands.
        let _ = self.stdout.write_all(line.as_bytes());
    }
}
