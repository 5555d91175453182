//! Stand-ins for what cannot be downloaded here, and the sandbox host the product is tested in.
//!
//! The binaries `sim-srcds` and `fake-steamcmd` behave like srcds and steamcmd where left4me can
//! see it. [`Sandbox`] boots a real systemd in private namespaces (the `left4me-sandbox` binary)
//! and runs commands inside it; a [`Network`] joins sandboxes on a private network of their own,
//! where [`Sandbox::serve_ssh`] runs a real OpenSSH server. [`Git`] is git with a fixed identity,
//! for the tests' repositories.

pub mod fleet;
mod git;
pub mod http;
pub mod network;
mod sandbox;

pub use git::Git;
pub use network::{Network, NetworkError};
pub use sandbox::{
    Sandbox, SandboxError, WEBHOOK_DIR, WEBHOOK_PORT, built_binary, copy_dir, disk, free_port, workspace,
};
