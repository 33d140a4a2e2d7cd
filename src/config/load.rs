//! Reads the configuration file, anchors its relative paths at the file's directory, and checks
//! on disk every file and directory it names.
//!
//! Owns: the filesystem side of loading (the parse and validation stay pure in `parse`). Every
//! command that runs a configuration (`run`, `check`, a reload) loads it through [`load`], so
//! `check` refuses exactly what `run` would. Must not touch: sockets or the environment.

use std::path::{Path, PathBuf};

use rustix::fs::Access;

use super::model::{AccessLogTarget, Config, RouteAction};
use super::validate::PathKind;
use super::{ConfigError, LocatedPath, parse_located};

/// Reads, parses and validates `path`; relative paths inside become relative to its directory;
/// every file and directory it names is checked (log directory writable, `static_dir` a
/// directory, maintenance page and TLS files readable), each error at the key's line and column.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let (config, paths) = read_located(path)?;
    let file = path.display().to_string();
    let errors: Vec<ConfigError> = paths
        .iter()
        .filter_map(|p| {
            check_path(p.kind, &p.path).err().map(|message| ConfigError {
                file: file.clone(),
                line: p.line,
                col: p.col,
                message,
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
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
