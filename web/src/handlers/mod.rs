//! The handlers of the pages that show and of what is not a form: each reads its request, calls
//! a view (or the host), and answers. The forms (`forms/`), the raw editor (`editor.rs`) and
//! saving (`save/`) have their handlers with them.

pub mod actions;
pub mod admin;
pub mod assets;
pub mod backups;
pub mod events;
pub mod files;
pub mod login;
pub mod monitor;
pub mod pages;
pub mod stream;
