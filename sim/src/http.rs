//! The little HTTP/1.1 the stand-in servers speak (`fake-steam-api`, `sim-webhook`, `sim-http`):
//! one request per connection, a thread per connection, std only.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};

/// One request as a stand-in reads it.
pub struct Request {
    pub method: String,
    pub path: String,
    /// By lowercase name.
    pub headers: BTreeMap<String, String>,
    /// At most the `max_body` bytes [`read_request`] was given, however long the request says it is.
    pub body: Vec<u8>,
}

/// Reads one request: its line, its headers, and a body of its `Content-Length` (at most
/// `max_body` bytes of it).
pub fn read_request(reader: &mut BufReader<TcpStream>, max_body: usize) -> std::io::Result<Request> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or("/").to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length.min(max_body)];
    reader.read_exact(&mut body)?;
    Ok(Request { method, path, headers, body })
}

/// Hands each connection of `listener` to `serve` on a thread of its own, for as long as the
/// process runs; what `serve` fails with is said on stderr under `name`.
pub fn serve_each<F>(name: &'static str, listener: TcpListener, serve: F)
where
    F: Fn(TcpStream) -> Result<(), String> + Clone + Send + 'static,
{
    for stream in listener.incoming().flatten() {
        let serve = serve.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream) {
                eprintln!("{name}: {e}");
            }
        });
    }
}
