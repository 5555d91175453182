//! The web app's tests: real HTTP against a real server on 127.0.0.1:0, a real state repo and
//! real SQLite; and a real browser against the app and a reconciler in the sandbox host.

mod attack_auth;
mod attack_save;
mod attack_views;
mod audit;
mod backups;
mod blueprint_limits;
mod browser;
mod connect;
mod files;
mod fleet;
mod gamelog;
mod history;
mod hosts;
mod http;
mod retry;
mod support;
