//! What steamcmd says about the game's builds: the build a branch publishes (`app_info_print`) and the
//! build an install holds (`steamapps/appmanifest_<app>.acf`). Pure functions over their text.

use thiserror::Error;

use crate::vdf::{self, Value, VdfError};

/// The L4D2 dedicated server's Steam app.
pub const APP_ID: &str = "222860";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SteamError {
    #[error(
        "steamcmd's app_info_print output holds no \"{APP_ID}\" block; run it again with +app_info_update 1 \
         after +login anonymous"
    )]
    NoAppInfo,
    #[error("steamcmd's {what} is not readable VDF: {source}")]
    Vdf { what: &'static str, source: VdfError },
    #[error("Steam publishes no branch '{branch}' of app {APP_ID}; its branches are: {}", list(.available))]
    NoBranch { branch: String, available: Vec<String> },
    #[error("steamcmd's {what} has no {path}")]
    Missing { what: &'static str, path: &'static str },
    #[error("steamcmd's {what} has {path} '{value}', which is not a number")]
    NotANumber { what: &'static str, path: &'static str, value: String },
}

fn list(names: &[String]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

/// An install as its manifest records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstalledBuild {
    pub build_id: u64,
    /// False while steamcmd has not finished (or failed half-way): such a tree is not that build yet.
    pub complete: bool,
}

const APP_INFO: &str = "app_info_print output";
const MANIFEST: &str = "app manifest";

/// What `app_info_print` says of a branch: the build it publishes and what installing it
/// downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchInfo {
    pub build_id: u64,
    /// The sum of the `download` sizes (else `size`) of the depots' manifests for the branch (a
    /// depot without one of its own serves the public branch's); 0 when steamcmd names none.
    pub download_bytes: u64,
}

/// The build id `branch` publishes, from `steamcmd +app_info_print 222860`'s whole output (the log lines
/// around the app's block are skipped).
pub fn published_build(app_info_text: &str, branch: &str) -> Result<u64, SteamError> {
    branch_info(app_info_text, branch).map(|info| info.build_id)
}

/// The build `branch` publishes and its download size, from `app_info_print`'s whole output.
pub fn branch_info(app_info_text: &str, branch: &str) -> Result<BranchInfo, SteamError> {
    let vdf_error = |source| SteamError::Vdf { what: APP_INFO, source };
    if app_info_text.len() > vdf::MAX_INPUT {
        return Err(vdf_error(VdfError::TooLarge { len: app_info_text.len() }));
    }
    let start = block_start(app_info_text).ok_or(SteamError::NoAppInfo)?;
    let (_, app) = vdf::parse_entry(&app_info_text[start..]).map_err(vdf_error)?;
    let depots = app.get("depots").ok_or(SteamError::Missing { what: APP_INFO, path: "depots" })?;
    let branches = depots.get("branches").ok_or(SteamError::Missing { what: APP_INFO, path: "depots > branches" })?;
    let Some(found) = branches.get(branch) else {
        let available = branches.keys().into_iter().map(str::to_owned).collect();
        return Err(SteamError::NoBranch { branch: branch.to_owned(), available });
    };
    let build_id = number(found, "buildid", APP_INFO, "depots > branches > <branch> > buildid")?;
    let mut download_bytes: u64 = 0;
    for key in depots.keys().into_iter().filter(|key| key.bytes().all(|b| b.is_ascii_digit())) {
        let Some(manifests) = depots.get(key).and_then(|depot| depot.get("manifests")) else { continue };
        // An older steamcmd writes a manifest as its gid alone: no size to read.
        let Some(manifest) = manifests.get(branch).or_else(|| manifests.get("public")).filter(|m| m.as_str().is_none())
        else {
            continue;
        };
        let path = "depots > <depot> > manifests > <branch> > download";
        let bytes = match manifest.get("download") {
            Some(_) => number(manifest, "download", APP_INFO, path)?,
            None => optional_number_of(manifest, "size", APP_INFO, "depots > <depot> > manifests > <branch> > size")?
                .unwrap_or(0),
        };
        download_bytes = download_bytes.saturating_add(bytes);
    }
    Ok(BranchInfo { build_id, download_bytes })
}

/// The build an install holds, from its `appmanifest_222860.acf`.
pub fn installed_build(manifest_text: &str) -> Result<InstalledBuild, SteamError> {
    let doc = vdf::parse(manifest_text).map_err(|source| SteamError::Vdf { what: MANIFEST, source })?;
    let state = doc.get("AppState").ok_or(SteamError::Missing { what: MANIFEST, path: "AppState" })?;
    let build_id = number(state, "buildid", MANIFEST, "AppState > buildid")?;
    let flags = number(state, "StateFlags", MANIFEST, "AppState > StateFlags")?;
    // Older manifests leave the byte counts out once nothing is left to fetch.
    let downloaded = optional_number(state, "BytesDownloaded", "AppState > BytesDownloaded")?;
    let to_download = optional_number(state, "BytesToDownload", "AppState > BytesToDownload")?;
    let complete = flags & STATE_FULLY_INSTALLED != 0 && flags & STATE_UNFINISHED == 0 && downloaded == to_download;
    Ok(InstalledBuild { build_id, complete })
}

/// Steam's `EAppState` bits: 4 is "fully installed"; these others mean an update is wanted, running,
/// paused or was started and not finished.
const STATE_FULLY_INSTALLED: u64 = 4;
const STATE_UNFINISHED: u64 = 2 | 256 | 512 | 1024;

/// Where the app's block starts: the first line that is `"222860"` alone (log lines may name the app too).
/// One pass over the lines, so no input makes the search slower than reading it.
fn block_start(text: &str) -> Option<usize> {
    let heading = format!("\"{APP_ID}\"");
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim() == heading {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

fn number(block: &Value, key: &str, what: &'static str, path: &'static str) -> Result<u64, SteamError> {
    let text = block.get(key).and_then(Value::as_str).ok_or(SteamError::Missing { what, path })?;
    text.trim().parse().map_err(|_| SteamError::NotANumber { what, path, value: text.to_owned() })
}

fn optional_number(block: &Value, key: &str, path: &'static str) -> Result<Option<u64>, SteamError> {
    optional_number_of(block, key, MANIFEST, path)
}

fn optional_number_of(
    block: &Value,
    key: &str,
    what: &'static str,
    path: &'static str,
) -> Result<Option<u64>, SteamError> {
    match block.get(key) {
        None => Ok(None),
        Some(_) => number(block, key, what, path).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of `steamcmd +login anonymous +app_info_update 1 +app_info_print 222860 +quit`.
    const APP_INFO_OUTPUT: &str = r#"Redirecting stderr to '/home/steam/Steam/logs/stderr.txt'
[  0%] Checking for available updates...
[----] Verifying installation...
Steam Console Client (c) Valve Corporation - version 1738634470
-- type 'quit' to exit --
Loading Steam API...OK
Logging in user 'anonymous' to Steam Public...OK
Waiting for client config...OK
Waiting for user info...OK
AppID : 222860, change number : 26340421/0, last change : Tue Nov 12 18:02:13 2024
"222860"
{
	"common"
	{
		"name"		"Left 4 Dead 2 Dedicated Server"
		"type"		"Tool"
		"oslist"		"windows,linux"
		"gameid"		"222860"
	}
	"config"
	{
		"installdir"		"Left 4 Dead 2 Dedicated Server"
		"launch"
		{
			"0"
			{
				"executable"		"srcds.exe"
				"arguments"		"-console -game left4dead2 \"+map c1m1_hotel\""
			}
		}
	}
	"depots"
	{
		"222861"
		{
			"config"
			{
				"oslist"		"windows"
			}
			"manifests"
			{
				"public"
				{
					"gid"		"4519377395335612837"
					"size"		"10342412345"
					"download"		"9054341184"
				}
			}
		}
		"branches"
		{
			"public"
			{
				"buildid"		"16046151"
				"timeupdated"		"1731434533"
			}
			"previous"
			{
				"buildid"		"15933247"
				"description"		"the build before the last update"
				"timeupdated"		"1726058000"
			}
		}
	}
}
"#;

    const MANIFEST_DONE: &str = "\"AppState\"\n{\n\t\"appid\"\t\t\"222860\"\n\t\"StateFlags\"\t\t\"4\"\n\
        \t\"buildid\"\t\t\"16046151\"\n\t\"BytesToDownload\"\t\t\"9054341184\"\n\
        \t\"BytesDownloaded\"\t\t\"9054341184\"\n\t\"UserConfig\"\n\t{\n\t\t\"platform_override_dest\"\t\t\"linux\"\n\t}\n}\n";

    #[test]
    fn published_build_reads_the_branch_after_steamcmds_log_lines() {
        assert_eq!(published_build(APP_INFO_OUTPUT, "public"), Ok(16_046_151));
        assert_eq!(published_build(APP_INFO_OUTPUT, "previous"), Ok(15_933_247));
    }

    #[test]
    fn the_download_is_the_sum_of_the_branchs_depot_manifests() {
        let info = branch_info(APP_INFO_OUTPUT, "public").unwrap();
        assert_eq!(info, BranchInfo { build_id: 16_046_151, download_bytes: 9_054_341_184 });
        let two = APP_INFO_OUTPUT.replacen(
            "\t\t\"branches\"",
            "\t\t\"222862\"\n\t\t{\n\t\t\t\"manifests\"\n\t\t\t{\n\t\t\t\t\"previous\"\n\t\t\t\t{\n\
             \t\t\t\t\t\"gid\"\t\"1\"\n\t\t\t\t\t\"size\"\t\"300\"\n\t\t\t\t}\n\t\t\t}\n\t\t}\n\t\t\"branches\"",
            1,
        );
        // The branch's own manifest where a depot has one, the public one's elsewhere.
        assert_eq!(branch_info(&two, "previous").unwrap().download_bytes, 9_054_341_184 + 300);
        let bad = APP_INFO_OUTPUT.replace("\"download\"\t\t\"9054341184\"", "\"download\"\t\t\"lots\"");
        assert!(matches!(branch_info(&bad, "public"), Err(SteamError::NotANumber { .. })));
    }

    #[test]
    fn a_missing_branch_names_it_and_the_branches_there_are() {
        let err = published_build(APP_INFO_OUTPUT, "beta").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Steam publishes no branch 'beta' of app 222860; its branches are: public, previous"
        );
    }

    #[test]
    fn output_without_the_app_block_is_a_clear_error() {
        let out = "Loading Steam API...OK\nAppID : 222860, change number : 0/0\nNo app info for AppID 222860 found\n";
        assert_eq!(published_build(out, "public"), Err(SteamError::NoAppInfo));
    }

    #[test]
    fn a_truncated_app_block_is_an_error_not_a_build() {
        let cut = &APP_INFO_OUTPUT[..APP_INFO_OUTPUT.find("\"16046151\"").unwrap() + 4];
        assert!(matches!(published_build(cut, "public"), Err(SteamError::Vdf { .. })));
    }

    #[test]
    fn installed_build_reads_a_finished_manifest() {
        assert_eq!(installed_build(MANIFEST_DONE), Ok(InstalledBuild { build_id: 16_046_151, complete: true }));
    }

    #[test]
    fn a_half_downloaded_install_is_not_complete() {
        let half = MANIFEST_DONE.replace("\"BytesDownloaded\"\t\t\"9054341184\"", "\"BytesDownloaded\"\t\t\"1200\"");
        assert_eq!(installed_build(&half), Ok(InstalledBuild { build_id: 16_046_151, complete: false }));
        let updating = MANIFEST_DONE.replace("\"StateFlags\"\t\t\"4\"", "\"StateFlags\"\t\t\"1026\"");
        assert_eq!(installed_build(&updating).map(|build| build.complete), Ok(false));
    }

    #[test]
    fn a_manifest_without_a_number_build_id_says_so() {
        let bad = MANIFEST_DONE.replace("\"16046151\"", "\"latest\"");
        assert_eq!(
            installed_build(&bad).unwrap_err().to_string(),
            "steamcmd's app manifest has AppState > buildid 'latest', which is not a number"
        );
    }

    #[test]
    fn hostile_output_is_an_error_never_a_panic() {
        // A heading on every position of one long line must not make the search quadratic.
        let crowded = format!("\"{APP_ID}\"").repeat(vdf::MAX_INPUT / 9);
        assert_eq!(published_build(&crowded, "public"), Err(SteamError::NoAppInfo));
        let deep = format!("\"{APP_ID}\"\n{}", "{ \"k\" ".repeat(200_000));
        assert!(matches!(
            published_build(&deep, "public"),
            Err(SteamError::Vdf { source: VdfError::TooDeep { .. }, .. })
        ));
        let open = format!("\"{APP_ID}\"\n{{\n\t\"depots\" \"unterminated");
        assert!(matches!(published_build(&open, "public"), Err(SteamError::Vdf { .. })));
        let huge = format!("\"{APP_ID}\"\n{{\n{}}}\n", "\t\"k\" \"v\"\n".repeat(vdf::MAX_INPUT / 8));
        assert!(matches!(
            published_build(&huge, "public"),
            Err(SteamError::Vdf { source: VdfError::TooLarge { .. }, .. })
        ));
    }
}
