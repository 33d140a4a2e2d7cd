//! Ringway's configuration: the TOML format, its validation, and the validated model.
//!
//! Owns: reading the configuration file, turning its text into a [`Config`] with every default
//! filled in, and reporting every error with `file:line:col`. [`parse`] is pure (the variables
//! that `${NAME}` in addresses expands to are handed in as data, [`parse_with_vars`]); [`load`]
//! and [`load_text`] (the adapter) read the file, pass the process environment for `${NAME}`
//! and check on disk the files and directories it names. Must not: open sockets, resolve names,
//! read the environment beyond `${NAME}` or the clock beyond certificate validity — those belong
//! to the runtime, which calls [`check_admin_token`] once it knows whether the admin token is
//! set and reads the etcd password of `[cluster]`.

pub mod model;
pub use model::*;

mod cluster;
mod discover;
mod listener;
mod load;
mod parse;
mod pool;
mod route;
mod summary;
pub mod tls_check;
mod validate;
mod values;
mod walk;

#[cfg(test)]
mod tests;

pub use load::{load, load_text, load_with_warnings, read};
pub use route::derived_name as route_name;
pub use summary::{summary, summary_at};
pub use validate::conflicts as binds_conflict;
pub(crate) use values::{host_port, is_valid_name};

use std::fmt;

/// One configuration error, printed as `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file as given by the caller.
    pub file: String,
    /// 1-based line; 0 when the error is about the file as a whole (e.g. unreadable).
    pub line: usize,
    /// 1-based column in characters; 0 when `line` is 0.
    pub col: usize,
    /// What is wrong, in the operator's words.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Looks up the variable NAME of `${NAME}` in a listener's `bind` or `[admin] listen`: its value,
/// or `None` when it is not set. [`load`] passes the process environment; tests pass a table.
pub type Vars = dyn Fn(&str) -> Option<String>;

/// Parses and validates configuration text; returns every error found, in file order.
///
/// Pure: no file, network or environment access. Relative paths are left as written;
/// [`load`] makes them relative to the configuration file. No variable is set: a `${NAME}` is
/// an error (see [`parse_with_vars`]).
pub fn parse(source: &str, file_name: &str) -> Result<Config, Vec<ConfigError>> {
    parse_with_vars(source, file_name, &|_| None)
}

/// [`parse`], with `${NAME}` in listener `bind` and `[admin] listen` values replaced by
/// `vars(NAME)` (an unset variable is an error at the value).
pub fn parse_with_vars(source: &str, file_name: &str, vars: &Vars) -> Result<Config, Vec<ConfigError>> {
    parse_located(source, file_name, vars).map(|(config, _)| config)
}

/// A file or directory the configuration names, with where its key is written.
#[derive(Debug, Clone)]
pub(crate) struct LocatedPath {
    /// What it must be on disk.
    pub(crate) kind: validate::PathKind,
    /// As written (relative paths not yet anchored).
    pub(crate) path: std::path::PathBuf,
    /// 1-based line of its key.
    pub(crate) line: usize,
    /// 1-based column of its key.
    pub(crate) col: usize,
}

/// [`parse_with_vars`], also returning every path the configuration names (for [`load`] to
/// check).
pub(crate) fn parse_located(
    source: &str,
    file_name: &str,
    vars: &Vars,
) -> Result<(Config, Vec<LocatedPath>), Vec<ConfigError>> {
    let index = LineIndex::new(source);
    match parse::parse(source, vars) {
        Ok((config, paths)) => {
            let paths = paths
                .into_iter()
                .map(|p| {
                    let (line, col) = index.line_col(source, p.at);
                    LocatedPath {
                        kind: p.kind,
                        path: p.path,
                        line,
                        col,
                    }
                })
                .collect();
            Ok((config, paths))
        }
        Err(errors) => Err(errors
            .into_iter()
            .map(|(at, message)| {
                let (line, col) = index.line_col(source, at);
                ConfigError {
                    file: file_name.to_string(),
                    line,
                    col,
                    message,
                }
            })
            .collect()),
    }
}

/// Returns the error to refuse startup with when the admin interface listens on a non-loopback
/// address and no admin token is set.
///
/// `parse` cannot decide this because the token lives in the environment variable named by
/// `[admin].token_env`, known only at run time: the runtime calls this with
/// `token_present = std::env::var_os(&config.admin.token_env).is_some_and(|v| !v.is_empty())`.
pub fn check_admin_token(config: &Config, token_present: bool) -> Option<String> {
    let listen = config.admin.listen;
    if token_present || listen.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "[admin].listen {listen} is not a loopback address, so mutating admin calls need a \
         token: set the environment variable {} (or listen on 127.0.0.1)",
        config.admin.token_env
    ))
}

/// Byte offsets of line starts, to turn an offset into a 1-based line and column.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(src: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// 1-based (line, column); the column counts characters, as editors do.
    fn line_col(&self, src: &str, at: usize) -> (usize, usize) {
        let at = at.min(src.len());
        let line = self.starts.partition_point(|s| *s <= at).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let col = src
            .get(start..at)
            .map_or(at.saturating_sub(start), |s| s.chars().count());
        (line, col + 1)
    }
}
