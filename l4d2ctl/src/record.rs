//! The record of an instance, `instances/<name>/instance.json`: what `initialize` rendered, read
//! back by everything that acts on the instance.

use std::fs;
use std::path::Path;

use left4me_state::{Digest, InstanceSpec, Name};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::host::Host;

/// What `instances/<name>/instance.json` holds: the rendered spec and its digest, which the
/// reconciler compares with the digest of the revision, and the game build it stacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceRecord {
    pub digest: Digest,
    pub spec: InstanceSpec,
    /// The game build (`builds/<id>`) its starts stack; None for a record from before builds,
    /// which stacks the base install (`installation/`, or the build that was adopted as).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<u64>,
}

/// The record of an instance, or None when it is not initialized.
pub fn read(host: &Host, name: &Name) -> Result<Option<InstanceRecord>, Error> {
    let path = host.instance(name).record();
    load(&path).map_err(|cause| Error::Invalid(format!("{}: {cause}", path.display())))
}

/// The record at `path`, None when there is none, or why the one there cannot be used (a write
/// cut short by a power cut, an edit by hand).
pub fn load(path: &Path) -> Result<Option<InstanceRecord>, String> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| e.to_string())
}

/// Every initialized instance, by name.
pub fn list(host: &Host) -> Result<Vec<Name>, Error> {
    let dir = host.instances();
    let entries = crate::fsutil::entries(&dir)?;
    let mut names: Vec<Name> = entries
        .into_iter()
        .filter(|e| e.path().join("instance.json").is_file())
        .filter_map(|e| Name::new(e.file_name().to_string_lossy().into_owned()).ok())
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InstanceSpec {
        serde_json::from_str(
            r#"{"name":"coop-1","port":27015,"hostname":"coop","overlays":[],"arguments":["+map","c1m1_hotel"],
                "config":[]}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_record_from_before_builds_reads_and_writes_byte_identical() {
        let spec = spec();
        // The record as written before builds.
        #[derive(Serialize)]
        struct Before {
            digest: Digest,
            spec: InstanceSpec,
        }
        let old = serde_json::to_string_pretty(&Before { digest: spec.digest(), spec }).unwrap();
        let record: InstanceRecord = serde_json::from_str(&old).unwrap();
        assert_eq!(record.build, None);
        assert_eq!(serde_json::to_string_pretty(&record).unwrap(), old);
        let with_build = InstanceRecord { build: Some(16_046_151), ..record };
        let text = serde_json::to_string_pretty(&with_build).unwrap();
        assert!(text.contains("\"build\": 16046151"), "{text}");
        assert_eq!(serde_json::from_str::<InstanceRecord>(&text).unwrap(), with_build);
    }
}
