//! The `left4me` command line, run as a built binary.

mod validate;
