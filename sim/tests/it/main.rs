//! Tests of the stand-ins, run as built binaries.

mod sandbox;
mod srcds;
mod steamcmd;
