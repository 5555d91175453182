//! sim-http: a small HTTP server for tests, standing in for a download site.
//!
//! `sim-http <address:port> <folder> <log>` serves each file of `<folder>` at `/<file name>`
//! (`GET` only; nothing below the folder, nothing else) and appends each request's path to
//! `<log>`, one a line, so a test can count what was asked for. It prints `listening` once the
//! socket is bound, and runs until it is killed.

use std::fs;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address, folder, log] = args.as_slice() else {
        eprintln!("usage: sim-http <address:port> <folder> <log>");
        return ExitCode::from(2);
    };
    let listener = match TcpListener::bind(address) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("sim-http: cannot listen on {address}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening");
    let folder = PathBuf::from(folder);
    let log = Arc::new(Mutex::new(PathBuf::from(log)));
    for stream in listener.incoming().flatten() {
        let (folder, log) = (folder.clone(), Arc::clone(&log));
        std::thread::spawn(move || {
            let _ = serve(stream, &folder, &log);
        });
    }
    ExitCode::SUCCESS
}

/// Answers one request: the file it names, or 404.
fn serve(mut stream: TcpStream, folder: &Path, log: &Mutex<PathBuf>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    // Its headers and any body are dropped: nothing in them changes the answer.
    let path = left4me_sim::http::read_request(&mut reader, 0)?.path;
    if let Ok(log) = log.lock() {
        let mut file = fs::OpenOptions::new().create(true).append(true).open(&*log)?;
        writeln!(file, "{path}")?;
    }
    let name = path.trim_start_matches('/');
    let file = (!name.is_empty() && !name.contains('/') && !name.starts_with('.'))
        .then(|| fs::read(folder.join(name)).ok())
        .flatten();
    match file {
        Some(body) => {
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            stream.write_all(&body)
        }
        None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}
