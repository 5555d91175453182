//! Where a write's words go: each line plainly, or under `--json` as one [`Message`] per line,
//! so that no command branches on `--json` itself.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use l4d2ctl::Error;
use l4d2ctl::api::{Message, Outcome};
use left4me_state::Name;

/// How long the end of a write waits for the last lines its children wrote: they have ended by
/// then, so their lines are in the pipe already; only a grandchild that kept the pipe open (and
/// is no part of the write) could keep it waiting longer.
const CHILDREN_DRAIN: Duration = Duration::from_secs(2);

/// The output of one command.
pub struct Out {
    messages: Option<Messages>,
}

/// Under `--json`: the messages' own stdout, and what forwards the children's lines to it.
struct Messages {
    stdout: Arc<Mutex<File>>,
    /// Everything else written to fd 1 — a child's output (steamcmd, a build's log) — comes
    /// through a pipe and is sent on as `Progress` lines, as its plain run shows it on stdout,
    /// so the messages are all stdout holds and a caller keeps those lines where they were.
    /// Reports when the pipe has been read to its end.
    children: Option<mpsc::Receiver<()>>,
}

impl Out {
    pub fn plain() -> Out {
        Out { messages: None }
    }

    /// JSON Lines on stdout: stdout is kept for the messages and fd 1 made a pipe whose lines
    /// become messages.
    pub fn json_lines() -> Result<Out, Error> {
        let fail = |e: nix::Error| Error::io("stdout", e.into());
        let stdout = std::io::stdout().as_fd().try_clone_to_owned().map_err(|e| Error::io("stdout", e))?;
        let stdout = Arc::new(Mutex::new(File::from(stdout)));
        // The read end is close-on-exec, so no child holds it; fd 1, the write end's copy, is
        // inherited as every child's stdout.
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(fail)?;
        nix::unistd::dup2_stdout(&write).map_err(fail)?;
        drop(write);
        let (done, children) = mpsc::channel();
        let forward = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(File::from(read)).split(b'\n').map_while(Result::ok) {
                let text = String::from_utf8_lossy(&line).into_owned();
                write_message(&forward, &Message::Progress { server: None, text });
            }
            let _ = done.send(());
        });
        Ok(Out { messages: Some(Messages { stdout, children: Some(children) }) })
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
            Some(messages) => write_message(&messages.stdout, &Message::Progress { server: server.cloned(), text }),
            None => println!("{text}"),
        }
    }

    /// The last message, after every line the children wrote.
    fn last(&mut self, message: &Message) {
        let Some(messages) = &mut self.messages else { return };
        if let Some(children) = messages.children.take() {
            // fd 1 becomes stderr's copy, closing this process's end of the pipe: once the
            // children's ends are closed too, the forwarder reads its end and says so.
            let _ = std::io::stdout().flush();
            if nix::unistd::dup2_stdout(std::io::stderr()).is_ok() {
                let _ = children.recv_timeout(CHILDREN_DRAIN);
            }
        }
        write_message(&messages.stdout, message);
    }
}

/// One message, one line, written whole.
fn write_message(stdout: &Mutex<File>, message: &Message) {
    let mut line = serde_json::to_string(message).expect("a message always serializes");
    line.push('\n');
    // A reader gone away is no reason to stop the write half-way: its effect stands.
    let _ = stdout.lock().unwrap_or_else(PoisonError::into_inner).write_all(line.as_bytes());
}
