//! Tests of the stand-ins, run as built binaries.

mod demo;
mod sandbox;
mod srcds;
mod steamcmd;
