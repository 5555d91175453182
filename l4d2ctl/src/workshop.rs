//! What Steam says of workshop items and collections: `l4d2ctl workshop check` asks the Steam
//! Web API, expands collections to their items and keeps what it learnt in
//! `$ROOT/workshop/details.json`, which every observation reads back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::api::{MAX_WORKSHOP_ITEMS, Problem, Remedy, WorkshopDetails, WorkshopItemDetails};
use crate::error::Error;
use crate::fsutil::{Owner, ensure_dir, read_bounded, write_atomic};
use crate::host::Host;
use crate::steamapi::{Api, BATCH, RESULT_NOT_FOUND};

/// Collections in collections are followed this many levels deep, no further.
pub const MAX_DEPTH: usize = 4;
/// details.json is read up to this size: a thousand items with their titles are well under it.
const MAX_DETAILS: u64 = 1024 * 1024;

/// The workshop cache: `$ROOT/workshop/`.
pub fn cache(host: &Host) -> PathBuf {
    host.root.join("workshop")
}

fn details_path(host: &Host) -> PathBuf {
    cache(host).join("details.json")
}

/// What the last check learnt; nothing before any. A file that cannot be used (cut short, edited
/// by hand, too large) knows nothing and is a problem of the host: the next check writes it again.
pub fn read(host: &Host, problems: &mut Vec<Problem>) -> WorkshopDetails {
    let path = details_path(host);
    match std::fs::symlink_metadata(&path) {
        Err(e) => {
            problems.extend(Problem::unreadable(&path, &e, Remedy::CheckWorkshop));
            return WorkshopDetails::default();
        }
        Ok(meta) if !meta.is_file() || meta.len() > MAX_DETAILS => {
            let cause = format!("is not a regular file of at most {} KiB", MAX_DETAILS / 1024);
            problems.push(Problem::new(&path, cause, Remedy::CheckWorkshop));
            return WorkshopDetails::default();
        }
        Ok(_) => {}
    }
    let Some(bytes) = read_bounded(&path, MAX_DETAILS) else {
        problems.push(Problem::new(&path, "cannot be read", Remedy::CheckWorkshop));
        return WorkshopDetails::default();
    };
    match serde_json::from_slice(&bytes) {
        Ok(details) => details,
        Err(e) => {
            problems.push(Problem::new(&path, e, Remedy::CheckWorkshop));
            WorkshopDetails::default()
        }
    }
}

/// Asks Steam about `items` and `collections`, every collection expanded to its items (a child
/// that is a collection expanded too, at most [`MAX_DEPTH`] levels), and writes what it learnt to
/// details.json, replacing the last check's. Nothing is written unless every id was answered.
pub fn check(host: &Host, items: &[u64], collections: &[u64], now: &str) -> Result<WorkshopDetails, Error> {
    let game = Owner::user(&host.user)?;
    let api = Api { base: &host.steam_api, user: game };
    let expanded = expand(&api, collections)?;
    let mut wanted: Vec<u64> = Vec::new();
    for id in items.iter().chain(expanded.values().flatten()) {
        if !wanted.contains(id) {
            wanted.push(*id);
        }
    }
    if wanted.len() > MAX_WORKSHOP_ITEMS {
        return Err(Error::Invalid(format!(
            "{} workshop items are asked for, collections expanded; at most {MAX_WORKSHOP_ITEMS} are fetched",
            wanted.len()
        )));
    }
    let mut details = BTreeMap::new();
    for batch in wanted.chunks(BATCH) {
        for item in api.items(batch)? {
            if item.result == RESULT_NOT_FOUND {
                return Err(Error::Invalid(format!(
                    "workshop item {} does not exist on Steam (result 9): remove it from the overlay or \
                     collection that lists it",
                    item.id
                )));
            }
            let time_updated = match (item.result, item.time_updated) {
                (1, Some(time)) => time,
                (result, _) => {
                    return Err(Error::Invalid(format!(
                        "Steam answered result {result} for workshop item {} with no time_updated; try again later",
                        item.id
                    )));
                }
            };
            details.insert(item.id, WorkshopItemDetails { time_updated, title: item.title });
        }
    }
    let checked = WorkshopDetails { items: details, collections: expanded, checked_at: Some(now.to_owned()) };
    // Root's, as every record of what a server runs: the game's user downloads into its
    // `.steamcmd` only, and may not replace what root reads back.
    ensure_dir(&cache(host), 0o755, Owner::root())?;
    let text = serde_json::to_string_pretty(&checked).expect("workshop details always serialize");
    write_atomic(&details_path(host), format!("{text}\n").as_bytes(), 0o644, Owner::root())?;
    Ok(checked)
}

/// Each collection's items, in its order, the collections in it expanded in place. A collection
/// that holds itself (directly or through another), or nests deeper than [`MAX_DEPTH`], is
/// refused: Steam has no such collection of any use, and following it would never end.
fn expand(api: &Api<'_>, collections: &[u64]) -> Result<BTreeMap<u64, Vec<u64>>, Error> {
    let mut children: BTreeMap<u64, Vec<(u64, bool)>> = BTreeMap::new();
    let mut level: Vec<u64> = collections.to_vec();
    for depth in 0.. {
        level.retain(|id| !children.contains_key(id));
        level.dedup();
        if level.is_empty() {
            break;
        }
        if depth == MAX_DEPTH {
            return Err(Error::Invalid(format!(
                "workshop collection {} is nested more than {MAX_DEPTH} collections deep; list its collections \
                 in the overlay instead",
                level[0]
            )));
        }
        let mut next = Vec::new();
        for batch in level.chunks(BATCH) {
            for collection in api.collections(batch)? {
                if collection.result != 1 {
                    return Err(Error::Invalid(format!(
                        "workshop collection {} does not exist on Steam (result {}): remove it from the overlay \
                         that lists it",
                        collection.id, collection.result
                    )));
                }
                let listed: Vec<(u64, bool)> = collection.children.iter().map(|c| (c.id, c.is_collection)).collect();
                next.extend(listed.iter().filter(|(_, nested)| *nested).map(|(id, _)| *id));
                children.insert(collection.id, listed);
            }
        }
        level = next;
    }
    collections.iter().map(|id| Ok((*id, flatten(&children, *id, &mut Vec::new())?))).collect()
}

/// The items of collection `id`, its nested collections' in place; `path` is the collections
/// being expanded around it.
fn flatten(children: &BTreeMap<u64, Vec<(u64, bool)>>, id: u64, path: &mut Vec<u64>) -> Result<Vec<u64>, Error> {
    if path.contains(&id) {
        let through: Vec<String> = path.iter().chain([&id]).map(u64::to_string).collect();
        return Err(Error::Invalid(format!(
            "workshop collection {} contains itself ({}); remove the loop on Steam or list the items instead",
            path[0],
            through.join(" → ")
        )));
    }
    path.push(id);
    let mut items = Vec::new();
    let mut seen = BTreeSet::new();
    for (child, nested) in children.get(&id).map(Vec::as_slice).unwrap_or_default() {
        let found = match nested {
            true => flatten(children, *child, path)?,
            false => vec![*child],
        };
        items.extend(found.into_iter().filter(|item| seen.insert(*item)));
        if items.len() > MAX_WORKSHOP_ITEMS {
            return Err(Error::Invalid(format!(
                "workshop collection {} holds more than {MAX_WORKSHOP_ITEMS} items",
                path[0]
            )));
        }
    }
    path.pop();
    Ok(items)
}
