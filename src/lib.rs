//! Ringway: an HTTP load balancer and reverse proxy.
//!
//! The pure core (`balance`, `route`, `config` validation) decides; the adapters (`proxy`, the
//! config file loader, the CLI in `main.rs`, `demo`) do the I/O. Dependencies point inwards.
#![forbid(unsafe_code)]

pub mod admin;
pub mod balance;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod health;
pub mod proxy;
pub mod ring_cmd;
pub mod route;
