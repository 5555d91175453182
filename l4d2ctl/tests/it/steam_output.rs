//! The reader of steamcmd's output against fake-steamcmd's: the build `app_info_print` publishes and the
//! build its install records are the ones l4d2ctl reads. No sandbox needed: steamcmd runs as this user.

use std::fs;
use std::path::Path;
use std::process::Command;

use l4d2ctl::steam::{InstalledBuild, branch_info, installed_build, published_build};
use left4me_sim::built_binary;

fn steamcmd(dir: &Path, args: &[&str]) -> String {
    let binary = built_binary("fake-steamcmd").expect("fake-steamcmd is built (cargo build -p left4me-sim --bins)");
    let out = Command::new(binary)
        .current_dir(dir)
        .env("HOME", dir.join("home"))
        .env("FAKE_STEAMCMD_STATE_DIR", dir.join("state"))
        .env_remove("FAKE_STEAMCMD_EXTRA_FILES")
        .args(args)
        .output()
        .expect("running fake-steamcmd");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// A home and a state folder for fake-steamcmd, with build 16046151 published.
fn publishing_16046151() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    for sub in ["home", "state"] {
        fs::create_dir_all(dir.path().join(sub)).expect("creating a folder");
    }
    fs::write(dir.path().join("state/public-buildid"), "16046151\n").expect("publishing a build");
    dir
}

#[test]
fn the_published_build_reads_back_from_app_info_print_and_the_installed_manifest() {
    let dir = publishing_16046151();
    let out =
        steamcmd(dir.path(), &["+login", "anonymous", "+app_info_update", "1", "+app_info_print", "222860", "+quit"]);
    assert_eq!(published_build(&out, "public"), Ok(16_046_151), "{out}");
    let missing = published_build(&out, "beta").expect_err("fake-steamcmd publishes no beta branch");
    assert!(missing.to_string().contains("its branches are: public"), "{missing}");

    let install = dir.path().join("installation");
    let install = install.to_str().expect("a UTF-8 temporary path");
    for platform in ["windows", "linux"] {
        let args = ["+force_install_dir", install, "+login", "anonymous", "+@sSteamCmdForcePlatformType", platform];
        steamcmd(dir.path(), &[&args[..], &["+app_update", "222860", "+quit"]].concat());
    }
    let manifest = fs::read_to_string(Path::new(install).join("steamapps/appmanifest_222860.acf")).expect("manifest");
    assert_eq!(installed_build(&manifest), Ok(InstalledBuild { build_id: 16_046_151, complete: true }));
}

#[test]
fn a_beta_branch_and_the_download_size_read_back_from_app_info_print() {
    let dir = publishing_16046151();
    fs::write(dir.path().join("state/beta-buildid"), "16046200\n").expect("publishing a beta build");
    let app_info = ["+login", "anonymous", "+app_info_update", "1", "+app_info_print", "222860", "+quit"];
    let out = steamcmd(dir.path(), &app_info);
    let public = branch_info(&out, "public").expect("the public branch");
    let beta = branch_info(&out, "beta").expect("the beta branch");
    assert_eq!((public.build_id, beta.build_id), (16_046_151, 16_046_200), "{out}");
    assert!(public.download_bytes > 100_000, "both depots' files: {out}");
    fs::write(dir.path().join("state/download-bytes"), "12345\n").expect("inflating the download");
    let out = steamcmd(dir.path(), &app_info);
    assert_eq!(branch_info(&out, "public").map(|info| info.download_bytes), Ok(2 * 12_345), "{out}");

    let install = dir.path().join("installation");
    let install = install.to_str().expect("a UTF-8 temporary path");
    for platform in ["windows", "linux"] {
        let args = ["+force_install_dir", install, "+login", "anonymous", "+@sSteamCmdForcePlatformType", platform];
        steamcmd(dir.path(), &[&args[..], &["+app_update", "222860", "-beta", "beta", "+quit"]].concat());
    }
    let manifest = fs::read_to_string(Path::new(install).join("steamapps/appmanifest_222860.acf")).expect("manifest");
    assert_eq!(installed_build(&manifest), Ok(InstalledBuild { build_id: 16_046_200, complete: true }));
}
