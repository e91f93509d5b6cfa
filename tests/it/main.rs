//! One integration test binary: every test starts the real server on port 0 (or the real
//! binary, for kill -9) and talks HTTP to it.

mod cli;
mod cluster;
mod console;
mod crash;
mod delivery;
mod endpoints;
mod errors;
mod fix;
mod harness;
mod inbound;
mod lifecycle;
mod openapi;
mod ops;
mod rooms;
mod secrets;
mod security;
mod supervision;
mod tail;
