//! Sending one request with `curl`, the URL read from the host's secrets file at the moment of
//! sending. Nothing secret is on a command line (every process's argv is readable in /proc): the
//! URL, the headers and the body go to curl as its config, on stdin (`-K -`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::payload::Request;

/// Where the URLs of alerts are kept: root's, 0600, never in git.
pub const SECRETS_FILE: &str = "/etc/left4me/secrets.env";
/// The longest a delivery may take, connecting included.
const TIMEOUT_SECONDS: &str = "10";
const CONNECT_SECONDS: &str = "5";
/// The most of a receiver's answer read: it is shown, never parsed.
const MAX_ANSWER: u64 = 64 * 1024;

/// What a receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Its body, cut to a line's worth for people.
    pub body: String,
}

impl Answer {
    pub fn succeeded(&self) -> bool {
        (200..400).contains(&self.status)
    }
}

/// The URL of secret `key`, from `file` (`KEY=value` lines): it must be there, and http(s).
pub fn secret_url(file: &Path, key: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            format!("cannot read {}: {e}; it is root's: run this as root", file.display())
        }
        _ => format!(
            "cannot read {}: {e}; create it (root's, mode 0600) with a line {key}=https://… (deploy/install.sh makes an empty one)",
            file.display()
        ),
    })?;
    let url = l4d2ctl::host::parse_env_file(&text).into_iter().rev().find(|(name, _)| name == key).map(|(_, url)| url);
    let Some(url) = url.filter(|url| !url.is_empty()) else {
        return Err(format!(
            "{key} is not set in {}: add a line {key}=https://… with the receiver's URL (as root; the file stays 0600)",
            file.display()
        ));
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.chars().any(char::is_whitespace) {
        return Err(format!(
            "{key} in {} is not an http(s) URL: it must start with https:// (or http://) and hold no spaces",
            file.display()
        ));
    }
    Ok(url)
}

/// POSTs `request` to `url` once, with bounded time. A receiver that answered is an [`Answer`],
/// whatever its status; no answer (no connection, a timeout) is an error saying why.
pub fn post(url: &str, request: &Request) -> Result<Answer, String> {
    // `--disable` first: no .curlrc of anyone's changes what is sent. Without `--fail`, so that
    // what a refusing receiver says is read.
    let mut child = Command::new("curl")
        .args(["--disable", "--silent", "--show-error", "--proto", "=https,http", "--max-redirs", "0"])
        .args(["--max-time", TIMEOUT_SECONDS, "--connect-timeout", CONNECT_SECONDS])
        .args(["--output", "-", "--write-out", "\n%{http_code}", "--config", "-"])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run curl: {e}; install curl (Debian's curl package)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A curl that failed at once closed it; its own error says why.
        let _ = stdin.write_all(config(url, request).as_bytes());
    }
    let mut answer = Vec::new();
    let read = child.stdout.take().map(|out| out.take(MAX_ANSWER).read_to_end(&mut answer));
    let too_big = answer.len() as u64 >= MAX_ANSWER;
    if too_big {
        let _ = child.kill();
    }
    let mut said = String::new();
    if let Some(err) = child.stderr.take() {
        let _ = err.take(4096).read_to_string(&mut said);
    }
    let status = child.wait().map_err(|e| format!("curl was lost: {e}"))?;
    if too_big {
        return Err(format!(
            "the receiver answered more than {} KiB, more than any receiver of alerts does",
            MAX_ANSWER / 1024
        ));
    }
    if let Some(Err(e)) = read {
        return Err(format!("cannot read curl's answer: {e}"));
    }
    if !status.success() {
        let said = said.trim().trim_start_matches("curl: ");
        let code = status.code().map_or_else(|| "killed".to_owned(), |code| format!("exit {code}"));
        return Err(if said.is_empty() {
            format!("no answer (curl {code})")
        } else {
            format!("no answer ({said}; curl {code})")
        });
    }
    read_answer(&answer).ok_or_else(|| "curl said no HTTP status".to_owned())
}

/// curl's config for one POST: each value quoted, with the escapes its config syntax reads.
fn config(url: &str, request: &Request) -> String {
    let mut text = format!("url = {}\nrequest = \"POST\"\n", quoted(url));
    for (name, value) in &request.headers {
        text.push_str(&format!("header = {}\n", quoted(&format!("{name}: {value}"))));
    }
    // The whole body at once: no wait for a `100 Continue` a receiver may never send.
    text.push_str("header = \"Expect:\"\n");
    // `data-raw`: a body starting with @ is not a file to read.
    text.push_str(&format!("data-raw = {}\n", quoted(&request.body)));
    text
}

/// A value of curl's config in double quotes: `\`, `"` and the line breaks escaped.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The body and, on the last line `--write-out` added, the status.
fn read_answer(output: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(output);
    let (body, status) = text.rsplit_once('\n')?;
    let status = status.trim().parse().ok().filter(|status| *status > 0)?;
    let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(300).collect();
    Some(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_quotes_what_it_carries() {
        let request = Request {
            body: "{\"text\": \"a \\\"b\\\"\nc\"}".into(),
            headers: vec![("Title".into(), "x \"y\"".into())],
        };
        let config = config("https://example.invalid/hook?a=1&b=\"2\"", &request);
        assert_eq!(
            config,
            "url = \"https://example.invalid/hook?a=1&b=\\\"2\\\"\"\nrequest = \"POST\"\nheader = \"Title: x \\\"y\\\"\"\n\
             header = \"Expect:\"\ndata-raw = \"{\\\"text\\\": \\\"a \\\\\\\"b\\\\\\\"\\nc\\\"}\"\n"
        );
        assert_eq!(config.lines().count(), 5, "a line break in a value stays in its line");
    }

    /// Answers one request on a port of its own with `answer`; returns the URL and what it read.
    fn receiver(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let url = format!("http://{}/hook/secret-token", listener.local_addr().expect("an address"));
        let read = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("a connection");
            stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("a timeout");
            let mut request = Vec::new();
            let mut buffer = [0; 4096];
            // Until the body (its length in the head) is all there.
            while let Ok(n) = stream.read(&mut buffer) {
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                let length = text
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok());
                if n == 0 || text.split_once("\r\n\r\n").is_some_and(|(_, body)| Some(body.len()) >= length) {
                    break;
                }
            }
            stream.write_all(answer.as_bytes()).expect("answered");
            String::from_utf8_lossy(&request).into_owned()
        });
        (url, read)
    }

    #[test]
    fn a_post_carries_the_body_and_headers_and_reads_the_status() {
        let (url, read) =
            receiver("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo busy\n");
        let request = Request {
            body: "@/etc/passwd \"quoted\"\nline two".into(),
            headers: vec![("Content-Type".into(), "text/plain".into()), ("Title".into(), "a title".into())],
        };
        let answer = post(&url, &request).expect("an answer");
        assert_eq!(answer, Answer { status: 503, body: "too busy".into() });
        assert!(!answer.succeeded());
        let seen = read.join().expect("the receiver ends");
        assert!(seen.starts_with("POST /hook/secret-token HTTP/1.1\r\n"), "{seen}");
        assert!(seen.contains("\r\nContent-Type: text/plain\r\n") && seen.contains("\r\nTitle: a title\r\n"), "{seen}");
        assert!(seen.ends_with("\r\n\r\n@/etc/passwd \"quoted\"\nline two"), "the body as it is: {seen}");
    }

    /// A receiver that reads the request and then does `then` with the connection.
    fn hostile(then: fn(std::net::TcpStream)) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let url = format!("http://{}/", listener.local_addr().expect("an address"));
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("a connection");
            let mut buffer = [0; 4096];
            let _ = stream.read(&mut buffer);
            then(stream);
        });
        url
    }

    #[test]
    fn a_receiver_that_never_answers_or_answers_without_end_costs_a_bounded_try() {
        let request = Request { body: "{}".into(), headers: Vec::new() };
        let silent = hostile(|stream| {
            std::thread::sleep(std::time::Duration::from_secs(60));
            drop(stream);
        });
        let error = post(&silent, &request).expect_err("no answer");
        assert!(error.contains("timed out") && error.contains("curl exit 28"), "{error}");
        let endless = hostile(|mut stream| {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
            let chunk = vec![b'x'; 64 * 1024];
            while stream.write_all(&chunk).is_ok() {}
        });
        let error = post(&endless, &request).expect_err("too much");
        assert!(error.contains("answered more than 64 KiB"), "{error}");
    }

    #[test]
    fn no_answer_is_an_error_saying_why() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let url = format!("http://{}/", listener.local_addr().expect("an address"));
        drop(listener);
        let request = Request { body: "{}".into(), headers: Vec::new() };
        let error = post(&url, &request).expect_err("nobody listens");
        assert!(error.starts_with("no answer (") && error.contains("curl exit 7"), "{error}");
        let error = post("ftp://127.0.0.1/", &request).expect_err("not http");
        assert!(error.contains("curl exit 1"), "{error}");
    }

    #[test]
    fn the_answer_is_the_body_and_the_status_on_the_last_line() {
        assert_eq!(read_answer(b"ok\n\n  fine\n204"), Some(Answer { status: 204, body: "ok fine".into() }));
        assert_eq!(read_answer(b"\n500").map(|a| (a.status, a.succeeded())), Some((500, false)));
        assert_eq!(read_answer(b"\n000"), None, "curl's 000: no HTTP answer");
        assert_eq!(read_answer(b"nothing"), None);
    }

    #[test]
    fn a_secret_must_be_there_and_an_http_url() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let file = dir.path().join("secrets.env");
        let missing = secret_url(&file, "OPS_WEBHOOK").expect_err("no file");
        assert!(missing.contains("cannot read") && missing.contains("OPS_WEBHOOK=https://"), "{missing}");
        std::fs::write(
            &file,
            "# alerts\nOTHER=https://x.invalid/\nFILE_URL=file:///etc/shadow\nOPS_WEBHOOK=\"https://h.invalid/a\"\n",
        )
        .expect("written");
        assert_eq!(secret_url(&file, "OPS_WEBHOOK"), Ok("https://h.invalid/a".to_owned()));
        let unset = secret_url(&file, "CHAT_WEBHOOK").expect_err("not set");
        assert!(unset.contains("CHAT_WEBHOOK is not set in") && unset.contains("secrets.env"), "{unset}");
        let file_url = secret_url(&file, "FILE_URL").expect_err("not http");
        assert!(file_url.contains("is not an http(s) URL"), "{file_url}");
        // An alert naming another secret of the file (a password) neither sends it nor says it.
        std::fs::write(&file, "RESTIC_PASSWORD=hunter2 and more\n").expect("written");
        let password = secret_url(&file, "RESTIC_PASSWORD").expect_err("not a URL");
        assert!(!password.contains("hunter2"), "{password}");
    }
}
