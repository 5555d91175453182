//! Reading is bounded whatever a revision holds: huge, numerous, deep or special files and YAML
//! bombs end with a clear diagnostic, from a folder and from a commit alike.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use crate::support::{commit_tree, outcome};

const OVERLAY: &str = "apiVersion: left4me/v1\nkind: Overlay\nmetadata:\n  name: maps\nspec:\n  type: files\n";

fn overlay_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("overlays/maps/files")).unwrap();
    fs::write(dir.path().join("overlays/maps/overlay.yaml"), OVERLAY).unwrap();
    fs::write(dir.path().join("overlays/maps/files/readme.txt"), "maps\n").unwrap();
    dir
}

fn from_dir(root: &Path) -> String {
    outcome(&left4me_state::load_dir(root).expect("readable"))
}

fn from_git(root: &Path) -> String {
    let repo = commit_tree(root);
    outcome(&left4me_state::load_revision(repo.path(), "main").expect("readable").1)
}

#[test]
fn special_files_are_refused() {
    let dir = overlay_tree();
    let files = dir.path().join("overlays/maps/files");
    let mknod = |name: &str, args: &[&str]| {
        let status = Command::new("mknod").arg(files.join(name)).args(args).status().expect("mknod runs");
        assert!(status.success(), "mknod {name} needs root, as the test suite does");
    };
    mknod("null", &["c", "1", "3"]);
    mknod("disk", &["b", "7", "0"]);
    mknod("pipe", &["p"]);
    let _socket = std::os::unix::net::UnixListener::bind(files.join("socket")).unwrap();
    assert_eq!(
        from_dir(dir.path()),
        "overlays/maps/files/disk: is a block device; the state repo may hold only files, folders and symlinks\n\
         overlays/maps/files/null: is a character device; the state repo may hold only files, folders and symlinks\n\
         overlays/maps/files/pipe: is a FIFO; the state repo may hold only files, folders and symlinks\n\
         overlays/maps/files/socket: is a socket; the state repo may hold only files, folders and symlinks\n"
    );
}

#[test]
fn a_huge_file_is_refused_without_being_read() {
    let dir = overlay_tree();
    // Sparse: a gibibyte on paper, nothing on disk. Reading it would take seconds and the memory.
    let huge = fs::File::create(dir.path().join("overlays/maps/files/map.vpk")).unwrap();
    huge.set_len(1 << 30).unwrap();
    assert_eq!(
        from_dir(dir.path()),
        "overlays/maps/files/map.vpk: file is 1 GiB; a file in the state repo may be at most 1 MiB\n"
    );

    huge.set_len(1024 * 1024 + 1).unwrap();
    let expected = "overlays/maps/files/map.vpk: file is 1.0 MiB; a file in the state repo may be at most 1 MiB\n";
    assert_eq!(from_dir(dir.path()), expected);
    assert_eq!(from_git(dir.path()), expected);
}

#[test]
fn ten_thousand_files_stop_at_the_limit() {
    let dir = overlay_tree();
    let files = dir.path().join("overlays/maps/files/left4dead2/maps");
    fs::create_dir_all(&files).unwrap();
    for i in 0..10_000 {
        fs::write(files.join(format!("map{i:05}.txt")), "x").unwrap();
    }
    // Past the point where reading stops (overlays/ comes before servers/), so neither reader
    // gets to it, and they agree.
    fs::create_dir_all(dir.path().join("servers")).unwrap();
    fs::write(dir.path().join("servers/big.yaml"), vec![b'#'; 2 << 20]).unwrap();
    let expected = ".: more than 5000 files under left4me.yaml, blueprints/, servers/ and overlays/; reading stopped \
                    there (large trees belong in script or workshop overlays)\n";
    assert_eq!(from_dir(dir.path()), expected);
    assert_eq!(from_git(dir.path()), expected);
}

#[test]
fn deep_folders_stop_at_the_limit() {
    let dir = overlay_tree();
    let deep = dir.path().join("overlays/maps/files").join("d/".repeat(40));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom.cfg"), "x").unwrap();
    let expected = format!("overlays/maps/files/{}: nested more than 24 levels deep\n", ["d"; 21].join("/"));
    assert_eq!(from_dir(dir.path()), expected);
    assert_eq!(from_git(dir.path()), expected);
}

#[test]
fn odd_file_names_are_refused() {
    let dir = overlay_tree();
    let files = dir.path().join("overlays/maps/files");
    fs::write(files.join(std::ffi::OsStr::from_bytes(b"caf\xe9.cfg")), "x").unwrap();
    fs::write(files.join("two\nlines.cfg"), "x").unwrap();
    // A folder with a bad name is reported once, however many files it holds.
    for folder in [&b"maps\xff"[..], b"tab\tbed"] {
        let folder = files.join(std::ffi::OsStr::from_bytes(folder));
        fs::create_dir(&folder).unwrap();
        for file in ["a.bsp", "b.bsp", "c.bsp"] {
            fs::write(folder.join(file), "x").unwrap();
        }
    }
    let expected = "overlays/maps/files/caf\u{FFFD}.cfg: file name is not valid UTF-8\n\
                    overlays/maps/files/maps\u{FFFD}: file name is not valid UTF-8\n\
                    overlays/maps/files/tab\\tbed: file name holds a control character\n\
                    overlays/maps/files/two\\nlines.cfg: file name holds a control character\n";
    assert_eq!(from_dir(dir.path()), expected);
    assert_eq!(from_git(dir.path()), expected);
}

#[test]
fn yaml_bombs_are_refused_before_they_go_off() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("blueprints")).unwrap();
    // 130 KB of YAML that a reader without limits expands to a gigabyte of strings.
    let refs = vec!["*s"; 10_000].join(", ");
    let bomb = format!(
        "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {{name: bomb, owner: alice}}\nspec:\n  arguments: [&s \"{}\", {refs}]\n",
        "A".repeat(100_000)
    );
    fs::write(dir.path().join("blueprints/bomb.yaml"), bomb).unwrap();
    // Most of a mebibyte of nesting, which a naive reader takes minutes over.
    let nest = format!("{}{}", "[".repeat(400_000), "]".repeat(400_000));
    let deep = format!(
        "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {{name: deep, owner: alice}}\nspec:\n  config: {nest}\n"
    );
    fs::write(dir.path().join("blueprints/deep.yaml"), deep).unwrap();
    let expected = "blueprints/bomb.yaml:5:100022: YAML aliases (*name) are not supported in the state repo; write the \
                    value out\n\
                    blueprints/deep.yaml:5:41: nested more than 32 levels deep\n";
    assert_eq!(from_dir(dir.path()), expected);
}

#[test]
fn a_nested_repository_is_refused_like_a_submodule() {
    let dir = overlay_tree();
    let plugin = dir.path().join("overlays/maps/files/addons/plugin");
    fs::create_dir_all(plugin.join(".git")).unwrap();
    fs::write(plugin.join("plugin.smx"), "x").unwrap();
    assert_eq!(
        from_dir(dir.path()),
        "overlays/maps/files/addons/plugin: is a git submodule; the state repo may hold only files, folders and \
         symlinks\n"
    );
}

#[test]
fn an_overlong_symlink_target_from_git_is_refused() {
    // Only git can carry a target longer than a file system allows; write one with plumbing.
    let dir = overlay_tree();
    let repo = commit_tree(dir.path());
    let target = "a/".repeat(2500);
    let blob = {
        let mut child = Command::new("git")
            .args(["-C", repo.path().to_str().unwrap(), "hash-object", "-w", "--stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(target.as_bytes()).unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().trim().to_owned()
    };
    let info = format!("120000,{blob},overlays/maps/files/long");
    crate::support::git(repo.path(), &["update-index", "--add", "--cacheinfo", &info]);
    crate::support::git(repo.path(), &["commit", "--quiet", "-m", "long symlink"]);
    let (_, checked) = left4me_state::load_revision(repo.path(), "main").unwrap();
    assert_eq!(
        outcome(&checked),
        "overlays/maps/files/long: symlink target is 5000 bytes long; at most 4095 are allowed\n"
    );
}
