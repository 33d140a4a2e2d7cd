//! Reads the configuration file and anchors its relative paths at the file's directory.
//!
//! The only file this module reads is the configuration itself; certificates, pages and
//! directories are checked when the runtime opens them.

use std::path::{Path, PathBuf};

use super::model::{AccessLogTarget, Config, RouteAction};
use super::{ConfigError, parse};

/// Reads, parses and validates `path`; relative paths inside become relative to its directory.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: file.clone(),
            line: 0,
            col: 0,
            message: format!("cannot read the configuration file: {e}"),
        }]
    })?;
    let mut config = parse(&source, &file)?;
    // `Path::parent` of "ringway.toml" is "", which joins as the current directory: correct.
    let base = path.parent().unwrap_or(Path::new(""));
    anchor_paths(&mut config, base);
    Ok(config)
}

/// Makes every relative path in `config` relative to `base`, so that `ringway -c /etc/x.toml`
/// works from any working directory (as nginx resolves its paths against its prefix).
fn anchor_paths(config: &mut Config, base: &Path) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    if let AccessLogTarget::File(p) = &mut config.log.access {
        fix(p);
    }
    for l in &mut config.listeners {
        for pair in l.tls.iter_mut().flat_map(|t| t.certs.iter_mut()) {
            fix(&mut pair.cert);
            fix(&mut pair.key);
        }
    }
    for r in &mut config.routes {
        if let RouteAction::Static { dir } = &mut r.action {
            fix(dir);
        }
        if let Some(page) = r.maintenance.as_mut().and_then(|m| m.page.as_mut()) {
            fix(page);
        }
    }
}
