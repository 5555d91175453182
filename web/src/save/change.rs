//! What a save is made of — files with their new text, or removed — and what it may be: its
//! bounds (files, paths, the commit message) and why one is refused, with the problems as the
//! pages show them.

use left4me_state::Diagnostic;
use serde::Serialize;

use crate::access::Denied;

/// The most files one save may change. A form, the editor, Start/Stop and Delete change one; a
/// revert changes what its commit changed. Each file costs reading, checking and a diff, so a
/// request listing thousands is refused before any of that work.
pub const MAX_SAVE_FILES: usize = 64;

/// The longest commit message kept, in bytes: a subject and a body of a few paragraphs. The diff
/// says the rest.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// A file change with the text shown for it.
#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    pub path: String,
    /// None removes the file.
    pub content: Option<String>,
}

/// A change proposed: the revision the editor started from, the files, the commit message, and
/// the page the preview's Back (and the save's redirect) goes to.
pub struct Proposal {
    pub base: Option<String>,
    pub files: Vec<FileChange>,
    pub message: String,
    pub back: String,
}

/// Why a change may not be made.
pub enum Refusal {
    /// Another user's object: answered as if it did not exist.
    NotFound,
    Forbidden(String),
    /// The request itself cannot be saved (a document that cannot be read, too many files):
    /// the problems, shown as validation's are.
    Invalid(Vec<Shown>),
}

impl From<Denied> for Refusal {
    fn from(denied: Denied) -> Refusal {
        match denied {
            Denied::NotFound => Refusal::NotFound,
            Denied::Forbidden(why) => Refusal::Forbidden(why),
            Denied::Unreadable(diagnostic) => Refusal::Invalid(vec![Shown::from(&diagnostic)]),
        }
    }
}

/// A diagnostic as the pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    pub text: String,
}

impl Shown {
    /// A problem that is not about a place in a file.
    pub fn plain(message: String) -> Shown {
        Shown { path: String::new(), line: None, column: None, text: message.clone(), message }
    }
}

impl From<&Diagnostic> for Shown {
    fn from(d: &Diagnostic) -> Shown {
        Shown {
            path: d.path.clone(),
            line: d.position.map(|p| p.line),
            column: d.position.map(|p| p.column),
            message: d.message.clone(),
            text: d.to_string(),
        }
    }
}

/// What one save may list: at most [`MAX_SAVE_FILES`] files, each once.
pub fn check_files(files: &[FileChange]) -> Result<(), String> {
    if files.len() > MAX_SAVE_FILES {
        return Err(too_many_files(files.len()));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = files.iter().find(|f| !seen.insert(f.path.as_str())) {
        return Err(format!(
            "{:?} is listed twice in one save; each file is changed once (with its content, or removed)",
            twice.path
        ));
    }
    Ok(())
}

/// Why a save of `count` files is refused.
pub fn too_many_files(count: usize) -> String {
    format!("this save lists {count} files; a save changes at most {MAX_SAVE_FILES} — split it, or make it with git")
}

/// A commit message as it is kept: line ends as LF, trimmed, at most [`MAX_MESSAGE_BYTES`],
/// no control characters but line breaks and tabs (a NUL cannot be committed, and the history
/// reads commits apart at control characters).
pub fn check_message(message: &str) -> Result<String, String> {
    let message = message.replace("\r\n", "\n");
    let message = message.trim();
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "the commit message is {} bytes; at most {MAX_MESSAGE_BYTES} are kept — say what changed and why, the \
             diff shows the rest",
            message.len()
        ));
    }
    if let Some(c) = message.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\t')) {
        return Err(format!(
            "the commit message holds the control character U+{:04X}; write it as plain text",
            u32::from(c)
        ));
    }
    Ok(if message.is_empty() { "Change the desired state".to_owned() } else { message.to_owned() })
}

/// A path the editor may write: inside the state repo's resources, plain components only.
pub fn check_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && path.len() <= 1024
        && !path.starts_with('/')
        && path.split('/').all(|part| !part.is_empty() && part != "." && part != ".." && !part.starts_with('.'))
        && !path.chars().any(|c| c.is_control() || c == '\\')
        && (path == "left4me.yaml"
            || ["servers/", "blueprints/", "overlays/", "schedules/", "alerts/"].iter().any(|p| path.starts_with(p)));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{path:?} is not a file of the state repo's resources (left4me.yaml, servers/, blueprints/, overlays/, \
             schedules/, alerts/)"
        ))
    }
}
