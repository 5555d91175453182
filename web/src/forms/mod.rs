//! The forms: the server form (with Start/Stop), the blueprint form, what they share and how
//! they write YAML. Each proposes one file's change to the save pipeline.

pub mod blueprint;
pub mod object;
pub mod server;
pub mod yaml;
