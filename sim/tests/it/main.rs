//! Tests of the stand-ins, run as built binaries.

mod demo;
mod layout;
mod network;
mod sandbox;
mod srcds;
mod steamcmd;
