//! Reads the configuration file, anchors its relative paths at the file's directory, and checks
//! on disk every file and directory it names.
//!
//! Owns: the filesystem side of loading (the parse and validation stay pure in `parse`). Every
//! command that runs a configuration (`run`, `check`, a reload) loads it through [`load`], so
//! `check` refuses exactly what `run` would. Must not touch: sockets or the environment.

use std::path::{Path, PathBuf};

use rustix::fs::Access;

use super::model::{AccessLogTarget, CertPair, Config, RouteAction};
use super::tls_check::PairFile;
use super::validate::PathKind;
use super::{ConfigError, LocatedPath, parse_located};

/// Reads, parses and validates `path`; relative paths inside become relative to its directory;
/// every file and directory it names is checked (log directory writable, `static_dir` a
/// directory, maintenance page readable, TLS certificates and keys readable, valid now and
/// matching), each error at the key's line and column.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    load_with_warnings(path).map(|(config, _)| config)
}

/// [`load`], also returning the warnings (a certificate that expires within
/// [`super::tls_check::EXPIRY_WARNING_DAYS`] days), each at its key's line and column.
pub fn load_with_warnings(path: &Path) -> Result<(Config, Vec<ConfigError>), Vec<ConfigError>> {
    let (config, paths) = read_located(path)?;
    let file = path.display().to_string();
    let at = |p: &LocatedPath, message: String| ConfigError {
        file: file.clone(),
        line: p.line,
        col: p.col,
        message,
    };
    let mut errors = Vec::new();
    let mut unusable = vec![false; paths.len()];
    for (i, p) in paths.iter().enumerate() {
        if let Err(message) = check_path(p.kind, &p.path) {
            errors.push(at(p, message));
            unusable[i] = true;
        }
    }
    let mut warnings = Vec::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for (pair, cert_at, key_at) in tls_pairs(&config, &paths) {
        // A file already reported as missing or unreadable is not reported twice.
        if unusable[cert_at] || unusable[key_at] {
            continue;
        }
        match super::tls_check::load_pair(pair, now) {
            Ok(loaded) => warnings.extend(loaded.expiry_warning(pair).map(|w| at(&paths[cert_at], w))),
            Err(e) => {
                let key = match e.file {
                    PairFile::Cert => cert_at,
                    PairFile::Key => key_at,
                };
                errors.push(at(&paths[key], e.message));
            }
        }
    }
    if errors.is_empty() {
        Ok((config, warnings))
    } else {
        errors.sort_by_key(|e| (e.line, e.col));
        Err(errors)
    }
}

/// Every listener certificate pair with the indices in `paths` of its `cert` and `key` keys.
///
/// The parser notes each pair's `cert` then its `key`, listeners in file order, and a parsed
/// configuration has every pair complete, so the n-th certificate fact and the n-th key fact
/// belong to the n-th pair of the listeners.
fn tls_pairs<'a>(config: &'a Config, paths: &[LocatedPath]) -> Vec<(&'a CertPair, usize, usize)> {
    let certs = paths
        .iter()
        .enumerate()
        .filter(|(_, p)| p.kind == PathKind::TlsCert);
    let keys = paths
        .iter()
        .enumerate()
        .filter(|(_, p)| p.kind == PathKind::TlsKey);
    config
        .listeners
        .iter()
        .flat_map(|l| l.tls.iter().flat_map(|t| t.certs.iter()))
        .zip(certs.zip(keys))
        .filter(|(pair, ((_, c), (_, k)))| pair.cert == c.path && pair.key == k.path)
        .map(|(pair, ((ci, _), (ki, _)))| (pair, ci, ki))
        .collect()
}

/// Like [`load`] without looking at the files the configuration names: for commands that only
/// read it (`ringway ring`, `ringway reload`), possibly on another machine than the one it runs on.
pub fn read(path: &Path) -> Result<Config, Vec<ConfigError>> {
    read_located(path).map(|(config, _)| config)
}

fn read_located(path: &Path) -> Result<(Config, Vec<LocatedPath>), Vec<ConfigError>> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: file.clone(),
            line: 0,
            col: 0,
            message: format!("cannot read the configuration file: {e}"),
        }]
    })?;
    let (mut config, mut paths) = parse_located(&source, &file)?;
    // `Path::parent` of "ringway.toml" is "", which joins as the current directory: correct.
    let base = path.parent().unwrap_or(Path::new(""));
    anchor_paths(&mut config, base);
    for p in &mut paths {
        anchor(&mut p.path, base);
    }
    Ok((config, paths))
}

fn anchor(p: &mut PathBuf, base: &Path) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

/// Makes every relative path in `config` relative to `base`, so that `ringway -c /etc/x.toml`
/// works from any working directory (as nginx resolves its paths against its prefix).
fn anchor_paths(config: &mut Config, base: &Path) {
    if let AccessLogTarget::File(p) = &mut config.log.access {
        anchor(p, base);
    }
    for l in &mut config.listeners {
        for pair in l.tls.iter_mut().flat_map(|t| t.certs.iter_mut()) {
            anchor(&mut pair.cert, base);
            anchor(&mut pair.key, base);
        }
    }
    for p in &mut config.pools {
        if let Some(ca) = p.tls.as_mut().and_then(|t| t.ca.as_mut()) {
            anchor(ca, base);
        }
    }
    for r in &mut config.routes {
        if let RouteAction::Static { dir } = &mut r.action {
            anchor(dir, base);
        }
        if let Some(page) = r.maintenance.as_mut().and_then(|m| m.page.as_mut()) {
            anchor(page, base);
        }
    }
}

/// Whether `path` is what `kind` needs on disk; the message names the key and the path.
///
/// Permissions are asked of the kernel (`access(2)`), so that ACLs, read-only mounts and root
/// are judged as the running process will meet them, without creating or changing a file.
fn check_path(kind: PathKind, path: &Path) -> Result<(), String> {
    let shown = path.display();
    match kind {
        PathKind::AccessLog => {
            if path.is_dir() {
                return Err(format!("access log {shown} is a directory, not a file"));
            }
            if path.exists() {
                return writable(path).map_err(|e| format!("access log {shown} cannot be written: {e}"));
            }
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                return Err(format!(
                    "access log {shown}: directory {} does not exist",
                    dir.display()
                ));
            }
            rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK).map_err(|e| {
                format!(
                    "access log {shown}: cannot create a file in {}: {}",
                    dir.display(),
                    std::io::Error::from(e)
                )
            })
        }
        PathKind::StaticDir => {
            if !path.exists() {
                return Err(format!("static_dir {shown} does not exist"));
            }
            if !path.is_dir() {
                return Err(format!("static_dir {shown} is not a directory"));
            }
            rustix::fs::access(path, Access::READ_OK | Access::EXEC_OK)
                .map_err(|e| format!("static_dir {shown} cannot be read: {}", std::io::Error::from(e)))
        }
        PathKind::MaintenancePage => readable_file(path, "maintenance page"),
        PathKind::TlsCert => readable_file(path, "certificate"),
        PathKind::TlsKey => readable_file(path, "private key"),
        PathKind::TlsCa => readable_file(path, "CA certificate file"),
    }
}

fn writable(path: &Path) -> std::io::Result<()> {
    // Opening for append neither creates nor changes the file.
    std::fs::OpenOptions::new().append(true).open(path).map(drop)
}

fn readable_file(path: &Path, what: &str) -> Result<(), String> {
    let shown = path.display();
    if path.is_dir() {
        return Err(format!("{what} {shown} is a directory, not a file"));
    }
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| format!("{what} {shown} cannot be read: {e}"))
}
