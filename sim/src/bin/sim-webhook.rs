//! sim-webhook: a receiver of webhooks that records what it is sent, for the alerts' tests.
//!
//! `sim-webhook --listen 127.0.0.1:27090 [--dir DIR]` answers every HTTP/1.1 request, whatever
//! its method and path, and appends it to `requests.jsonl` in its folder (default
//! `/var/lib/sim-webhook`) as one JSON line: `{"method", "path", "headers": {lowercased name:
//! value}, "body"}`. It answers `200 OK` with the body `ok`, or `500` while the knob file `fail`
//! in its folder says so: a number N answers 500 to the next N requests (counted down in the
//! file), `always` to every request. A request refused with 500 is recorded too, with
//! `"answered": 500`.

use std::fs::OpenOptions;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};

use left4me_sim::http::read_request;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use serde_json::json;

const DIR: &str = "/var/lib/sim-webhook";
/// The largest body read: an alert's is a few KiB.
const MAX_BODY: usize = 256 * 1024;

/// One request at a time touches the files: the knob is counted down and the log appended whole.
static FILES: Mutex<()> = Mutex::new(());

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let Some(listen) = value("--listen") else {
        eprintln!("usage: sim-webhook --listen ADDR:PORT [--dir DIR]");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(value("--dir").unwrap_or_else(|| DIR.into()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("sim-webhook: cannot make {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let listener = match TcpListener::bind(&listen) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("sim-webhook: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("sim-webhook: listening on {listen}, recording in {}", dir.display());
    left4me_sim::http::serve_each("sim-webhook", listener, move |stream| serve(stream, &dir));
    ExitCode::SUCCESS
}

/// One connection: one request, recorded, one answer, closed.
fn serve(stream: TcpStream, dir: &Path) -> Result<(), String> {
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let request = read_request(&mut reader, MAX_BODY).map_err(|e| e.to_string())?;
    let request = json!({
        "method": request.method,
        "path": request.path,
        "headers": request.headers,
        "body": String::from_utf8_lossy(&request.body),
    });
    let status = {
        let _files = FILES.lock().map_err(|_| "a request panicked".to_owned())?;
        let failing = take_failure(dir);
        let status = if failing { 500 } else { 200 };
        let mut line = request;
        line["answered"] = json!(status);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("requests.jsonl"))
            .map_err(|e| format!("cannot open the log: {e}"))?;
        // One write of the whole line: a reader never sees half of it.
        log.write_all(format!("{line}\n").as_bytes()).map_err(|e| format!("cannot write the log: {e}"))?;
        status
    };
    let (line, body) = if status == 500 { ("500 Internal Server Error", "failing") } else { ("200 OK", "ok") };
    let head = format!(
        "HTTP/1.1 {line}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = stream;
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).map_err(|e| e.to_string())
}

/// Whether the knob says to fail this request; a count is counted down.
fn take_failure(dir: &Path) -> bool {
    let knob = dir.join("fail");
    let Ok(text) = std::fs::read_to_string(&knob) else { return false };
    let text = text.trim();
    if text == "always" {
        return true;
    }
    match text.parse::<u64>() {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let _ = std::fs::write(&knob, (n - 1).to_string());
            true
        }
    }
}
