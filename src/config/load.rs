//! Reads the configuration file, anchors its relative paths at the file's directory, and checks
//! on disk every file and directory it names.
//!
//! Owns: the filesystem side of loading (the parse and validation stay pure in `parse`), and
//! handing the process environment to `${NAME}` in addresses. Every command that runs a
//! configuration (`run`, `check`, a reload) loads it through [`load`], and a published
//! configuration through [`load_text`], so `check` refuses exactly what `run` would. Must not
//! touch: sockets, or the environment beyond `${NAME}`.

use std::path::{Path, PathBuf};

use rustix::fs::Access;

use super::model::{AccessLogTarget, CertPair, Config, RouteAction};
use super::tls_check::PairFile;
use super::validate::PathKind;
use super::{ConfigError, LocatedPath, parse_located};

/// Reads, parses and validates `path`; relative paths inside become relative to its directory;
/// every file and directory it names is checked (log directory writable, `static_dir` a
/// directory, maintenance page readable, TLS certificates and keys readable, valid now and
/// matching, the same of `[cluster]`'s `ca`, `cert` and `key`), each error at the key's line and
/// column. `${NAME}` in addresses is taken from the process environment.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    load_with_warnings(path).map(|(config, _)| config)
}

/// [`load`], also returning the warnings (a certificate that expires within
/// [`super::tls_check::EXPIRY_WARNING_DAYS`] days), each at its key's line and column.
pub fn load_with_warnings(path: &Path) -> Result<(Config, Vec<ConfigError>), Vec<ConfigError>> {
    let source = read_source(path)?;
    load_text(&source, &path.display().to_string(), base_of(path))
}

/// [`load_with_warnings`] for configuration text that did not come from a file (a published
/// configuration): errors name `file_name`, relative paths are anchored at `base` (the
/// directory they are relative to) and checked on disk there, `${NAME}` is taken from the
/// process environment.
pub fn load_text(
    source: &str,
    file_name: &str,
    base: &Path,
) -> Result<(Config, Vec<ConfigError>), Vec<ConfigError>> {
    let (config, paths) = parse_anchored(source, file_name, base)?;
    let file = file_name.to_string();
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
    for (pair, cert_at, key_at) in tls_pairs(&config, &paths)
        .into_iter()
        .chain(cluster_pair(&config, &paths))
    {
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

/// The client certificate pair of `[cluster]` with the indices in `paths` of its `cert` and
/// `key` keys: judged as a listener's pair is (readable PEM, valid now, the key the
/// certificate's own), since the etcd client would fail on it later.
fn cluster_pair<'a>(config: &'a Config, paths: &[LocatedPath]) -> Option<(&'a CertPair, usize, usize)> {
    let pair = config.cluster.as_ref()?.tls.as_ref()?.client.as_ref()?;
    let cert = paths.iter().position(|p| p.kind == PathKind::ClusterCert)?;
    let key = paths.iter().position(|p| p.kind == PathKind::ClusterKey)?;
    Some((pair, cert, key))
}

/// Like [`load`] without looking at the files the configuration names: for commands that only
/// read it (`ringway ring`, `ringway reload`), possibly on another machine than the one it runs on.
pub fn read(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let source = read_source(path)?;
    parse_anchored(&source, &path.display().to_string(), base_of(path)).map(|(config, _)| config)
}

fn read_source(path: &Path) -> Result<String, Vec<ConfigError>> {
    std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            col: 0,
            message: format!("cannot read the configuration file: {e}"),
        }]
    })
}

/// The directory relative paths of the file at `path` are relative to. `Path::parent` of
/// "ringway.toml" is "", which joins as the current directory: correct.
fn base_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// The value of the process environment's variable `name`, for `${NAME}`; one that is not
/// valid Unicode cannot be part of an address and counts as not set.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parses `source` with the process environment and anchors every relative path at `base`.
fn parse_anchored(
    source: &str,
    file_name: &str,
    base: &Path,
) -> Result<(Config, Vec<LocatedPath>), Vec<ConfigError>> {
    let (mut config, mut paths) = parse_located(source, file_name, &process_env)?;
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
    if let Some(c) = &mut config.cluster {
        if let Some(cache) = &mut c.cache {
            anchor(cache, base);
        }
        if let Some(tls) = &mut c.tls {
            if let Some(ca) = &mut tls.ca {
                anchor(ca, base);
            }
            if let Some(pair) = &mut tls.client {
                anchor(&mut pair.cert, base);
                anchor(&mut pair.key, base);
            }
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
        PathKind::ClusterCa => readable_file(path, "etcd CA certificate file"),
        PathKind::ClusterCert => readable_file(path, "etcd client certificate"),
        PathKind::ClusterKey => readable_file(path, "etcd client private key"),
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
