//! The proxy adapter: listeners, client connections, forwarding, upstream connections.
//!
//! Owns: everything between a client's socket and a server's socket. Reads the configuration
//! snapshot and asks the pure core (`route`, `balance`) for decisions; never decides them itself.

pub mod access_log;
pub mod answers;
pub mod body;
pub mod client_addr;
pub mod clock;
mod conn_state;
pub mod forward;
pub mod h1;
pub mod h1_server;
pub mod h2_server;
pub mod headers;
pub mod listeners;
mod prefixed;
mod protocols;
pub mod proxy_protocol;
pub mod reload;
pub mod request_body;
mod send_timeout;
pub mod server;
pub mod state;
pub mod static_files;
pub mod stats;
pub mod tls;
mod upload;
pub mod upstream;
pub mod upstream_conn;
pub mod upstream_h2;
pub mod upstream_io;
pub mod upstream_tls;
pub mod upstream_translate;
mod worker;

pub use reload::ReloadSummary;
pub use server::{Engine, StartError};
