//! The integration tests, in one binary: each module starts Ringway and real servers on
//! 127.0.0.1 and speaks to them through real clients. One binary links once and compiles the
//! shared helpers once, which keeps a cold `cargo test` within its time budget.

mod common;

mod access_log;
mod admin_api;
mod bad_input;
mod balancing;
mod cli;
mod client_abuse;
mod cluster;
mod cluster_apply;
mod demo;
mod discovery;
mod grpc;
mod h1_server;
mod hashing;
mod health;
mod listeners;
mod maintenance;
mod metrics;
mod normalize;
mod proxy;
mod proxy_protocol;
mod reload;
mod send_proxy;
mod static_files;
mod status_page;
mod tls;
mod tls_check;
mod upstream_h2;
mod upstream_reuse;
mod upstream_tls;
mod upstream_wire;
