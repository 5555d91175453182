//! `l4d2ctl`: the left4me host CLI. See `l4d2ctl --help`.
//!
//! [`cli`] is what may be asked, [`commands`] does each command, [`sink`] carries what a write
//! says: plainly, or as JSON Lines under `--json`.

mod cli;
mod commands;
mod sink;

use std::process::ExitCode;

use clap::Parser;
use l4d2ctl::Error;

use crate::cli::Cli;
use crate::sink::Out;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("l4d2ctl: {error}");
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1))
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    if cli.json && !cli.command.has_json_form() {
        return Err(Error::Invalid(
            "logs, rcon and exec pass another program's output on as it is: they have no --json form".into(),
        ));
    }
    let mut out = if cli.json && cli.command.is_write() {
        Out::json_lines(!cli.command.enters_pid1_namespace())?
    } else {
        Out::plain()
    };
    finish(commands::run(cli, &mut out), &mut out)
}

/// Ends a command's output: what a write did, or why it failed as a whole.
fn finish(ran: Result<Option<l4d2ctl::api::Outcome>, Error>, out: &mut Out) -> Result<(), Error> {
    match ran {
        Ok(Some(outcome)) => {
            let verdict = commands::verdict(&outcome);
            out.done(outcome);
            verdict
        }
        Ok(None) => Ok(()),
        Err(error) => {
            out.failed(&error);
            Err(error)
        }
    }
}
