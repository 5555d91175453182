//! The committed JSON Schema is the one the code generates, and the examples point editors at it.

use std::path::Path;

use crate::support::examples;

const COMMITTED: &str = "schema/left4me.schema.json";

#[test]
fn the_committed_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == left4me_state::json_schema(),
        "state/{COMMITTED} is stale; regenerate it with\n    cargo run --bin left4me -- schema > state/{COMMITTED}"
    );
}

#[test]
fn the_schema_knows_every_kind() {
    let schema: serde_json::Value = serde_json::from_str(&left4me_state::json_schema()).unwrap();
    for kind in ["Settings", "Blueprint", "Server", "Overlay", "Schedule", "Alert"] {
        let document = &schema["$defs"][format!("{kind}Document")];
        assert_eq!(document["additionalProperties"], false, "{kind} refuses unknown fields");
        let kind_def = document["properties"]["kind"]["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
        assert_eq!(schema["$defs"][kind_def]["enum"][0], kind);
    }
    assert_eq!(schema["$defs"]["Name"]["pattern"], left4me_state::NAME_PATTERN);
}

#[test]
fn every_example_names_the_committed_schema() {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED).canonicalize().unwrap();
    let mut checked = 0;
    let mut pending = vec![examples()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml")
                && !path.components().any(|c| c.as_os_str() == "files")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                let first = text.lines().next().unwrap_or_default();
                let target = first
                    .strip_prefix("# yaml-language-server: $schema=")
                    .unwrap_or_else(|| panic!("{} does not start with a $schema comment", path.display()));
                let resolved = path.parent().unwrap().join(target).canonicalize();
                assert_eq!(resolved.ok().as_ref(), Some(&schema), "{} points elsewhere", path.display());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 11);
}
