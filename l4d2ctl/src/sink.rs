//! Where a write's words go: each line plainly, or under `--json` as one [`Message`] per line,
//! so that no command branches on `--json` itself.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;

use l4d2ctl::Error;
use l4d2ctl::api::{Message, Outcome};
use left4me_state::Name;

/// The output of one command.
pub struct Out {
    /// Under `--json`: the messages' own stdout. Everything else written to fd 1 — a child's
    /// output (steamcmd, a build's log) — goes to stderr, so the messages are all stdout holds.
    messages: Option<File>,
}

impl Out {
    pub fn plain() -> Out {
        Out { messages: None }
    }

    /// JSON Lines on stdout: stdout is kept for the messages and fd 1 made a copy of stderr.
    pub fn json_lines() -> Result<Out, Error> {
        let stdout = std::io::stdout().as_fd().try_clone_to_owned().map_err(|e| Error::io("stdout", e))?;
        nix::unistd::dup2_stdout(std::io::stderr()).map_err(|e| Error::io("stdout", e.into()))?;
        Ok(Out { messages: Some(File::from(stdout)) })
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
        self.message(&Message::Done { outcome });
    }

    /// The write failed as a whole (its `l4d2ctl: …` line goes to stderr as well).
    pub fn failed(&mut self, error: &Error) {
        self.message(&Message::Failed { failure: error.failure() });
    }

    fn line(&mut self, server: Option<&Name>, text: String) {
        match self.messages {
            Some(_) => self.message(&Message::Progress { server: server.cloned(), text }),
            None => println!("{text}"),
        }
    }

    fn message(&mut self, message: &Message) {
        let Some(stdout) = &mut self.messages else { return };
        let mut line = serde_json::to_string(message).expect("a message always serializes");
        line.push('\n');
        // A reader gone away is no reason to stop the write half-way: its effect stands.
        let _ = stdout.write_all(line.as_bytes());
    }
}
