//! What the host could not use as it is: a broken or missing file of one server, a unit file
//! changed by hand. A problem is reported where it lies and healed there; it never stops a look
//! at the rest of the host.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A file or folder that cannot be used as it is, why, and what puts it right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub path: String,
    /// The reader's or the file system's own words.
    pub cause: String,
    pub remedy: Remedy,
}

/// What puts a problem right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Remedy {
    /// `l4d2ctl initialize` writes it again: the record, the RCON password, the runtime folders.
    Initialize,
    /// Written again when the server next starts; until then what it holds is taken as unknown.
    NextStart,
    /// A person's override marker: respected as one until `l4d2ctl release` removes it.
    Release,
    /// `l4d2ctl install --units-only` writes the unit files again and reloads systemd.
    InstallUnits,
    /// Rewritten when the overlay is written again.
    WriteOverlay,
}

impl Problem {
    pub fn new(path: impl AsRef<Path>, cause: impl fmt::Display, remedy: Remedy) -> Problem {
        Problem { path: path.as_ref().display().to_string(), cause: cause.to_string(), remedy }
    }

    /// A file that exists and cannot be read or parsed, or `None` for one that is missing.
    pub fn unreadable(path: &Path, error: &std::io::Error, remedy: Remedy) -> Option<Problem> {
        (error.kind() != std::io::ErrorKind::NotFound).then(|| Problem::new(path, error, remedy))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let remedy = match self.remedy {
            Remedy::Initialize => "initialize writes it again",
            Remedy::NextStart => "the next start writes it again",
            Remedy::Release => "`l4d2ctl release` removes it",
            Remedy::InstallUnits => "`l4d2ctl install --units-only` writes it again",
            Remedy::WriteOverlay => "writing the overlay again replaces it",
        };
        write!(f, "{}: {} ({remedy})", self.path, self.cause)
    }
}
