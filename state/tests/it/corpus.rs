//! The corpus of invalid state trees: one folder per rule under `tests/data/invalid/`, each with a
//! snapshot of its exact diagnostics. Every case is read both as a folder and as a git commit,
//! and both must say the same.

use std::path::Path;

use crate::support::{commit_tree, outcome};

#[test]
fn every_invalid_tree_is_refused_with_its_diagnostics() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/invalid");
    let mut cases: Vec<_> = std::fs::read_dir(&corpus)
        .expect("the corpus exists")
        .map(|entry| entry.expect("the corpus is readable").path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "the corpus lost cases: {}", cases.len());
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let from_dir = left4me_state::load_dir(&case).expect("the case folder is readable");
        assert!(from_dir.is_err(), "{name} validated, but it breaks a rule");
        let text = outcome(&from_dir);

        let repo = commit_tree(&case);
        let (_, from_git) = left4me_state::load_revision(repo.path(), "main").expect("the commit is readable");
        assert_eq!(outcome(&from_git), text, "the folder and the commit of {name} disagree");

        insta::assert_snapshot!(format!("invalid__{name}"), text);
    }
}
