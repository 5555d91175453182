//! What the pages show, built from the latest look at the host (and, for jobs, the reconciler's
//! database): template contexts and rows, apart from the handlers that answer requests.

pub mod catalog;
pub mod chart;
pub mod dashboard;
pub mod jobs;
pub mod metrics;
pub mod page;
pub mod plan;
pub mod server;
