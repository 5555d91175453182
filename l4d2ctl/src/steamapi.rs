//! The Steam Web API's two workshop calls, `ISteamRemoteStorage/GetPublishedFileDetails/v1/` and
//! `ISteamRemoteStorage/GetCollectionDetails/v1/` (POST, form fields, no key), asked with `curl`
//! as the game's user, and their answers read into typed, bounded values.
//!
//! Steam writes ids as strings (`"publishedfileid": "121275675"`), answers an item that does not
//! exist with `result` 9 and no details, and lists a collection's children with `filetype` 2 for
//! a child that is a collection itself.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use serde::{Deserialize, Deserializer};

use crate::api::FailureKind;
use crate::error::Error;
use crate::fsutil::Owner;

/// At most this many ids go in one request (and come back in one answer).
pub const BATCH: usize = 100;
/// At most this many bytes of one answer are read: a hundred items' details with their
/// descriptions are well under it.
pub const MAX_ANSWER: u64 = 4 * 1024 * 1024;
/// How long one request may take in all, and to connect.
const TIMEOUT_SECONDS: &str = "30";
const CONNECT_SECONDS: &str = "10";
/// The `result` Steam answers for a published file that does not exist.
pub const RESULT_NOT_FOUND: i64 = 9;
/// A collection's child with this `filetype` is a collection.
pub const FILETYPE_COLLECTION: u32 = 2;
/// Titles are kept to this many characters.
const MAX_TITLE: usize = 256;

/// One published file as `GetPublishedFileDetails` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: u64,
    /// Steam's `result`: 1 for a file that exists, 9 for one that does not.
    pub result: i64,
    pub time_updated: Option<u64>,
    pub title: String,
}

/// One collection as `GetCollectionDetails` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    pub id: u64,
    pub result: i64,
    pub children: Vec<Child>,
}

/// A collection's entry: an item, or a collection (`filetype` 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child {
    pub id: u64,
    pub is_collection: bool,
}

/// The Steam Web API at a base URL (`LEFT4ME_STEAM_API`).
pub struct Api<'a> {
    pub base: &'a str,
    /// Who runs curl: the game's user, never root, since it reads what the network answers.
    pub user: Owner,
}

impl Api<'_> {
    /// The details of `ids` (at most [`BATCH`]), one per id asked, in any order.
    pub fn items(&self, ids: &[u64]) -> Result<Vec<Item>, Error> {
        let url = self.url("GetPublishedFileDetails");
        let body = self.post(&url, &form("itemcount", ids))?;
        let items = parse_items(&body).map_err(|cause| unreadable(&url, &cause))?;
        answered(&url, ids, items.iter().map(|item| item.id))?;
        Ok(items)
    }

    /// The children of `ids` (at most [`BATCH`]), one per collection asked.
    pub fn collections(&self, ids: &[u64]) -> Result<Vec<Collection>, Error> {
        let url = self.url("GetCollectionDetails");
        let body = self.post(&url, &form("collectioncount", ids))?;
        let collections = parse_collections(&body).map_err(|cause| unreadable(&url, &cause))?;
        answered(&url, ids, collections.iter().map(|collection| collection.id))?;
        Ok(collections)
    }

    fn url(&self, method: &str) -> String {
        format!("{}/ISteamRemoteStorage/{method}/v1/", self.base.trim_end_matches('/'))
    }

    /// POSTs `body` (a form) to `url` with curl and reads at most [`MAX_ANSWER`] bytes of the
    /// answer; more is refused, and curl is ended.
    fn post(&self, url: &str, body: &str) -> Result<Vec<u8>, Error> {
        use std::os::unix::process::CommandExt;
        // `--disable` first: no .curlrc of anyone's changes what is asked.
        let mut child = Command::new("curl")
            .args(["--disable", "--silent", "--show-error", "--fail", "--proto", "=https,http", "--max-redirs", "0"])
            .args(["--max-time", TIMEOUT_SECONDS, "--connect-timeout", CONNECT_SECONDS])
            .args(["--max-filesize", &MAX_ANSWER.to_string()])
            .args(["--header", "Content-Type: application/x-www-form-urlencoded", "--data-binary", "@-"])
            // The whole form at once: no wait for a `100 Continue` a server may never send.
            .args(["--header", "Expect:"])
            .arg("--")
            .arg(url)
            .uid(self.user.uid.as_raw())
            .gid(self.user.gid.as_raw())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::Invalid(format!("cannot run curl (to ask {url}): {e}; install curl (Debian's curl package)"))
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A curl that failed at once closed it; its own error says why.
            let _ = stdin.write_all(body.as_bytes());
        }
        let mut answer = Vec::new();
        let read = child.stdout.take().map(|out| out.take(MAX_ANSWER + 1).read_to_end(&mut answer));
        let too_big = answer.len() as u64 > MAX_ANSWER;
        if too_big {
            let _ = child.kill();
        }
        let mut said = String::new();
        if let Some(err) = child.stderr.take() {
            let _ = err.take(4096).read_to_string(&mut said);
        }
        let status = child.wait().map_err(|e| Error::Invalid(format!("curl (asking {url}) was lost: {e}")))?;
        if too_big || status.code() == Some(63) {
            return Err(Error::Invalid(format!(
                "the Steam Web API at {url} answered more than {} MiB, more than any answer of it may be; \
                 check LEFT4ME_STEAM_API in /etc/left4me/host.env",
                MAX_ANSWER / (1024 * 1024)
            )));
        }
        if let Some(Err(e)) = read {
            return Err(Error::Invalid(format!("cannot read the answer of {url}: {e}")));
        }
        if !status.success() {
            let said = said.trim().trim_start_matches("curl: ");
            return Err(Error::Child {
                command: format!(
                    "curl asking the Steam Web API at {url} ({said}; check the host's network and LEFT4ME_STEAM_API \
                     in /etc/left4me/host.env)"
                ),
                code: status.code().unwrap_or(1),
                kind: FailureKind::Transient,
            });
        }
        Ok(answer)
    }
}

/// The form of a request about `ids`: the count, then `publishedfileids[i]`.
pub fn form(count: &str, ids: &[u64]) -> String {
    let mut body = format!("{count}={}", ids.len());
    for (index, id) in ids.iter().enumerate() {
        // `[` and `]` percent-encoded, as a form encodes them.
        body.push_str(&format!("&publishedfileids%5B{index}%5D={id}"));
    }
    body
}

/// `GetPublishedFileDetails`'s answer.
pub fn parse_items(body: &[u8]) -> Result<Vec<Item>, String> {
    let answer: Envelope<ItemsAnswer> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let items = answer.response.publishedfiledetails;
    bounded(items.len())?;
    Ok(items
        .into_iter()
        .map(|raw| Item {
            id: raw.publishedfileid,
            result: raw.result,
            time_updated: raw.time_updated,
            // Shown in a job's log, one line each: no control characters of anyone's.
            title: raw.title.unwrap_or_default().chars().filter(|c| !c.is_control()).take(MAX_TITLE).collect(),
        })
        .collect())
}

/// `GetCollectionDetails`'s answer.
pub fn parse_collections(body: &[u8]) -> Result<Vec<Collection>, String> {
    let answer: Envelope<CollectionsAnswer> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let collections = answer.response.collectiondetails;
    bounded(collections.len())?;
    collections
        .into_iter()
        .map(|raw| {
            bounded(raw.children.len())?;
            let children = raw
                .children
                .into_iter()
                .map(|child| Child { id: child.publishedfileid, is_collection: child.filetype == FILETYPE_COLLECTION })
                .collect();
            Ok(Collection { id: raw.publishedfileid, result: raw.result, children })
        })
        .collect()
}

/// At most this many entries in one list of an answer: ten times what an overlay may hold, so
/// a collection too large is refused by what it holds, with its own words, and a hostile answer
/// cannot make a list without end.
const MAX_LISTED: usize = 10 * crate::api::MAX_WORKSHOP_ITEMS;

fn bounded(count: usize) -> Result<(), String> {
    match count > MAX_LISTED {
        true => Err(format!("it lists {count} entries, more than any answer of Steam's ({MAX_LISTED})")),
        false => Ok(()),
    }
}

/// Every id asked is answered.
fn answered(url: &str, asked: &[u64], got: impl Iterator<Item = u64>) -> Result<(), Error> {
    let got: std::collections::BTreeSet<u64> = got.collect();
    match asked.iter().find(|id| !got.contains(id)) {
        Some(id) => Err(Error::Invalid(format!(
            "the Steam Web API at {url} did not answer for {id}; check LEFT4ME_STEAM_API in /etc/left4me/host.env"
        ))),
        None => Ok(()),
    }
}

fn unreadable(url: &str, cause: &str) -> Error {
    Error::Invalid(format!(
        "the answer of the Steam Web API at {url} cannot be read: {cause}; check LEFT4ME_STEAM_API in \
         /etc/left4me/host.env"
    ))
}

#[derive(Deserialize)]
struct Envelope<T> {
    response: T,
}

#[derive(Deserialize)]
struct ItemsAnswer {
    #[serde(default)]
    publishedfiledetails: Vec<RawItem>,
}

#[derive(Deserialize)]
struct RawItem {
    #[serde(deserialize_with = "id")]
    publishedfileid: u64,
    result: i64,
    #[serde(default)]
    time_updated: Option<u64>,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize)]
struct CollectionsAnswer {
    #[serde(default)]
    collectiondetails: Vec<RawCollection>,
}

#[derive(Deserialize)]
struct RawCollection {
    #[serde(deserialize_with = "id")]
    publishedfileid: u64,
    result: i64,
    #[serde(default)]
    children: Vec<RawChild>,
}

#[derive(Deserialize)]
struct RawChild {
    #[serde(deserialize_with = "id")]
    publishedfileid: u64,
    #[serde(default)]
    filetype: u32,
}

/// A published file id as Steam writes it: a string of digits (a plain number is taken too).
fn id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    let id = match Id::deserialize(deserializer)? {
        Id::Number(id) => id,
        Id::Text(text) => text
            .parse::<u64>()
            .map_err(|_| serde::de::Error::custom(format!("publishedfileid {text:?} is not a number")))?,
    };
    match id {
        0 => Err(serde::de::Error::custom("publishedfileid 0 is no published file")),
        id => Ok(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_lists_each_id_by_its_index() {
        assert_eq!(form("itemcount", &[5, 7]), "itemcount=2&publishedfileids%5B0%5D=5&publishedfileids%5B1%5D=7");
    }

    #[test]
    fn ids_are_strings_and_a_missing_item_has_result_9() {
        let body = br#"{"response":{"result":1,"resultcount":2,"publishedfiledetails":[
            {"publishedfileid":"121275675","result":1,"creator":"7656","file_size":5242880,
             "title":"Diescraper Redux","time_created":1363110000,"time_updated":1700000000,"tags":[]},
            {"publishedfileid":"404","result":9}]}}"#;
        let items = parse_items(body).unwrap();
        assert_eq!(
            items[0],
            Item { id: 121275675, result: 1, time_updated: Some(1700000000), title: "Diescraper Redux".into() }
        );
        assert_eq!(items[1], Item { id: 404, result: RESULT_NOT_FOUND, time_updated: None, title: String::new() });
        let titled =
            br#"{"response":{"publishedfiledetails":[{"publishedfileid":"1","result":1,"title":"a\nb\u001b[2J"}]}}"#;
        assert_eq!(parse_items(titled).unwrap()[0].title, "ab[2J");
    }

    #[test]
    fn a_collection_lists_items_and_collections() {
        let body = br#"{"response":{"result":1,"resultcount":1,"collectiondetails":[{"publishedfileid":"30",
            "result":1,"children":[{"publishedfileid":"1","sortorder":1,"filetype":0},
            {"publishedfileid":"31","sortorder":2,"filetype":2}]}]}}"#;
        let collections = parse_collections(body).unwrap();
        assert_eq!(
            collections[0].children,
            [Child { id: 1, is_collection: false }, Child { id: 31, is_collection: true }]
        );
    }

    #[test]
    fn ids_that_are_not_numbers_and_broken_json_are_refused() {
        let words = br#"{"response":{"publishedfiledetails":[{"publishedfileid":"12ab","result":1}]}}"#;
        assert!(parse_items(words).unwrap_err().contains("\"12ab\" is not a number"));
        assert!(parse_items(b"{\"response\":").is_err());
        assert!(parse_items(b"<html>").is_err());
    }
}
