//! fake-steam-api: a stand-in for the Steam Web API's two workshop calls, as left4me asks them.
//!
//! `fake-steam-api --listen 127.0.0.1:27080 [--state-dir DIR]` answers HTTP/1.1 POSTs of
//! `/ISteamRemoteStorage/GetPublishedFileDetails/v1/` (`itemcount`, `publishedfileids[i]`) and
//! `/ISteamRemoteStorage/GetCollectionDetails/v1/` (`collectioncount`, `publishedfileids[i]`) in
//! Steam's shape: `{"response": {"result": 1, "resultcount": n, "publishedfiledetails": [...]}}`,
//! ids written as strings, `result` 9 for an item or collection that does not exist, and a
//! collection's children that are collections with `filetype` 2.
//!
//! What it knows is `steam-api.json` in the state folder (`/var/lib/fake-steamcmd`, the one
//! fake-steamcmd reads too), read again for every request, so a test publishes an update by
//! editing it:
//!
//! ```json
//! {"items": {"121275675": {"time_updated": 1700000000, "title": "…"}},
//!  "collections": {"3014185046": [1575673903, 3014185047]},
//!  "answer": "normal"}
//! ```
//!
//! An item not listed exists, updated at 1,700,000,000, except item 404, which does not (as
//! fake-steamcmd downloads any item but 404); a collection exists only when listed, and a child
//! that is a listed collection is one. `answer` makes it misbehave: `huge` (4,000 more
//! entries of 2 KB each, twice the bound and thousands of times a real answer), `malformed` (JSON cut short), `ids-not-numbers`, `silent`
//! (reads the request and never answers). Every request is counted in `steam-api.requests`.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};

use left4me_sim::http::read_request;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

/// An item not listed in the state file was last updated then.
pub const DEFAULT_TIME_UPDATED: u64 = 1_700_000_000;
const STATE_DIR: &str = "/var/lib/fake-steamcmd";
/// The largest request read: a form of a hundred ids is far smaller.
const MAX_REQUEST: usize = 64 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let Some(listen) = value("--listen") else {
        eprintln!("usage: fake-steam-api --listen ADDR:PORT [--state-dir DIR]");
        return ExitCode::from(2);
    };
    let state = PathBuf::from(value("--state-dir").unwrap_or_else(|| STATE_DIR.into()));
    let listener = match TcpListener::bind(&listen) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("fake-steam-api: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("fake-steam-api: listening on {listen}, state in {}", state.display());
    left4me_sim::http::serve_each("fake-steam-api", listener, move |stream| serve(stream, &state));
    ExitCode::SUCCESS
}

/// One connection: one request, one answer, closed.
fn serve(stream: TcpStream, state: &Path) -> Result<(), String> {
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let request = read_request(&mut reader, MAX_REQUEST).map_err(|e| e.to_string())?;
    let (path, body) = (request.path, String::from_utf8_lossy(&request.body).into_owned());
    count(state);
    let known = std::fs::read(state.join("steam-api.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .unwrap_or(Value::Null);
    let mode = known["answer"].as_str().unwrap_or("normal").to_owned();
    if mode == "silent" {
        // Holds the connection open and says nothing, as a server that hangs.
        std::thread::sleep(std::time::Duration::from_secs(600));
        return Ok(());
    }
    let form = parse_form(&body);
    let ids: Vec<String> = (0..).map_while(|i| form.get(&format!("publishedfileids[{i}]")).cloned()).collect();
    let answer = match path.as_str() {
        "/ISteamRemoteStorage/GetPublishedFileDetails/v1/" => items(&known, &ids),
        "/ISteamRemoteStorage/GetCollectionDetails/v1/" => collections(&known, &ids),
        _ => return respond(stream, "404 Not Found", b"<html><body>Not Found</body></html>"),
    };
    let text = match mode.as_str() {
        "huge" => huge(&answer),
        "malformed" => {
            let text = answer.to_string();
            text[..text.len() / 2].to_owned()
        }
        "ids-not-numbers" => answer.to_string().replace("\"publishedfileid\":\"", "\"publishedfileid\":\"id-"),
        _ => answer.to_string(),
    };
    respond(stream, "200 OK", text.as_bytes())
}

fn respond(mut stream: TcpStream, status: &str, body: &[u8]) -> Result<(), String> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body)).map_err(|e| e.to_string())
}

/// `a=1&b%5B0%5D=2` as its fields, percent-decoded.
fn parse_form(body: &str) -> BTreeMap<String, String> {
    let decode = |text: &str| {
        let bytes = text.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                (b'%', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split('&').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
}

fn items(known: &Value, ids: &[String]) -> Value {
    let details: Vec<Value> = ids
        .iter()
        .map(|id| match (id.as_str(), &known["items"][id]) {
            ("404", _) => json!({"publishedfileid": id, "result": 9}),
            (_, Value::Null) => item(id, DEFAULT_TIME_UPDATED, &format!("Workshop item {id}")),
            (_, listed) => item(
                id,
                listed["time_updated"].as_u64().unwrap_or(DEFAULT_TIME_UPDATED),
                listed["title"].as_str().unwrap_or("Workshop item"),
            ),
        })
        .collect();
    json!({"response": {"result": 1, "resultcount": details.len(), "publishedfiledetails": details}})
}

/// An item's details as Steam gives them, with the fields left4me does not read too.
fn item(id: &str, time_updated: u64, title: &str) -> Value {
    json!({
        "publishedfileid": id, "result": 1, "creator": "76561197960287930", "creator_app_id": 550,
        "consumer_app_id": 550, "filename": "", "file_size": 5_242_880, "file_url": "",
        "hcontent_file": "0", "preview_url": "", "hcontent_preview": "0", "title": title,
        "description": "", "time_created": 1_600_000_000u64, "time_updated": time_updated,
        "visibility": 0, "banned": 0, "ban_reason": "", "subscriptions": 1, "favorited": 0,
        "lifetime_subscriptions": 1, "lifetime_favorited": 0, "views": 1, "tags": [{"tag": "Campaigns"}]
    })
}

fn collections(known: &Value, ids: &[String]) -> Value {
    let listed = &known["collections"];
    let details: Vec<Value> = ids
        .iter()
        .map(|id| match listed[id].as_array() {
            None => json!({"publishedfileid": id, "result": 9}),
            Some(children) => {
                let children: Vec<Value> = children
                    .iter()
                    .enumerate()
                    .map(|(order, child)| {
                        let child =
                            child.as_u64().map_or_else(|| child.as_str().unwrap_or("").to_owned(), |n| n.to_string());
                        let filetype = if listed[&child].is_array() { 2 } else { 0 };
                        json!({"publishedfileid": child, "sortorder": order + 1, "filetype": filetype})
                    })
                    .collect();
                json!({"publishedfileid": id, "result": 1, "children": children})
            }
        })
        .collect();
    json!({"response": {"result": 1, "resultcount": details.len(), "collectiondetails": details}})
}

/// The answer with its details listed over and over: thousands of times larger than any answer
/// may be, and still JSON.
fn huge(answer: &Value) -> String {
    let mut answer = answer.clone();
    let response = &mut answer["response"];
    for key in ["publishedfiledetails", "collectiondetails"] {
        if let Some(list) = response[key].as_array().cloned() {
            let padding = json!({"publishedfileid": "1", "result": 1, "description": "x".repeat(2000)});
            let many: Vec<Value> = list.into_iter().chain(std::iter::repeat_n(padding, 4000)).collect();
            response[key] = Value::Array(many);
        }
    }
    answer.to_string()
}

/// Counts a request in `steam-api.requests` (best effort: a test reads it).
fn count(state: &Path) {
    static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = COUNTING.lock();
    let path = state.join("steam-api.requests");
    let seen: u64 = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
    let _ = std::fs::write(&path, format!("{}\n", seen + 1));
}
