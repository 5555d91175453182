//! The web app's part of the audit trail (`$ROOT/audit.db`, [`l4d2ctl::audit`]): it records
//! sign-ins and user administration itself, and passes RCON commands to `l4d2ctl rcon --as`,
//! which records them. A trail that cannot be written is logged; it stops nothing.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use l4d2ctl::audit::{Audit, AuditError, Entry, Filter, Recorded};

/// The trail, opened when first needed and kept open.
pub struct AuditTrail {
    root: PathBuf,
    open: Mutex<Option<Audit>>,
}

impl AuditTrail {
    pub fn new(root: &Path) -> AuditTrail {
        AuditTrail { root: root.to_path_buf(), open: Mutex::new(None) }
    }

    /// Records that `who` did `action` from `from`; logged when the trail cannot be written.
    pub fn record(&self, who: &str, action: &str, server: Option<&str>, detail: &str, from: IpAddr) {
        let entry = Entry {
            who: who.to_owned(),
            action: action.to_owned(),
            server: server.map(str::to_owned),
            detail: detail.to_owned(),
            origin: origin(from),
        };
        if let Err(e) = self.with(|audit| audit.record(&entry)) {
            tracing::warn!(who, action, "not in the audit trail: {e}");
        }
    }

    pub fn entries(&self, filter: &Filter<'_>) -> Result<Vec<Recorded>, AuditError> {
        self.with(|audit| audit.entries(filter))
    }

    fn with<T>(&self, f: impl FnOnce(&Audit) -> Result<T, AuditError>) -> Result<T, AuditError> {
        let mut open = self.open.lock().expect("no holder of the audit lock panics");
        if open.is_none() {
            *open = Some(Audit::open(&self.root)?);
        }
        let result = f(open.as_ref().expect("the trail was just opened"));
        if result.is_err() {
            // Opened again next time: the file may have been replaced or repaired.
            *open = None;
        }
        result
    }
}

/// Where a web request came from, as the trail says it.
pub fn origin(from: IpAddr) -> String {
    format!("web {from}")
}

/// A name someone typed, as recorded: at most 64 characters, no control characters.
pub fn typed(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(64).collect()
}
