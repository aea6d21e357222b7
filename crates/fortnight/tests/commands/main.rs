//! The `fortnight` binary's tests, one test binary: each runs the built CLI
//! (`CARGO_BIN_EXE_fortnight`) against the real broker, with its own exchange, queues, store,
//! vhost or broker users, so they run in parallel without seeing each other.

mod common;

mod bus_config;
mod cli;
mod dead_letters;
mod demo;
mod fedora_ci;
mod interop;
mod operators;
mod publish;
mod release_notes;
mod schema_package;
mod secrets;
mod topology;
mod up;
mod web;
