//! Retries asked for in `$ROOT/retries`: taken by a pass, removed once it recorded them.

use left4me_state::Name;
use reconciler::retries;

#[test]
fn a_retry_asked_while_a_pass_runs_is_the_next_passs_and_what_is_no_request_is_removed() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (Name::new("a").unwrap(), Name::new("b").unwrap());
    assert!(retries::asked(root.path()).is_empty(), "no folder, nothing asked");
    retries::ask(root.path(), &a).unwrap();
    let folder = root.path().join("retries");
    std::fs::write(folder.join("Not_A_Server"), "").unwrap();
    std::fs::create_dir(folder.join("b")).unwrap();
    assert_eq!(retries::asked(root.path()), vec![a.clone()], "a plan reads only");
    assert!(folder.join("Not_A_Server").exists());

    let taken = retries::take(root.path());
    assert_eq!(taken, vec![a.clone()]);
    assert!(!folder.join("Not_A_Server").exists() && !folder.join("b").exists(), "no requests: removed");
    // Asked again (and b asked) while the pass runs: both are still there once it is done.
    retries::ask(root.path(), &a).unwrap();
    retries::ask(root.path(), &b).unwrap();
    assert_eq!(retries::asked(root.path()), vec![a.clone(), b.clone()]);
    retries::done(root.path(), &taken);
    assert_eq!(retries::asked(root.path()), vec![a.clone(), b.clone()]);
    let next = retries::take(root.path());
    assert_eq!(next, vec![a, b]);
    retries::done(root.path(), &next);
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0, "every request removed");
}

#[test]
fn a_pass_cut_short_leaves_its_taken_requests_to_the_next() {
    let root = tempfile::tempdir().unwrap();
    let a = Name::new("a").unwrap();
    retries::ask(root.path(), &a).unwrap();
    assert_eq!(retries::take(root.path()), vec![a.clone()]);
    // No `done`: the pass ended before it recorded them.
    assert_eq!(retries::asked(root.path()), vec![a.clone()]);
    assert_eq!(retries::take(root.path()), vec![a]);
}
