//! `ringway publish -c FILE`: a config checked as `ringway check` checks it, then written to the
//! fleet's `P/config` key.
//!
//! Owns: the command's checks, messages and exit code. Must not touch: how instances apply it
//! (`apply`).

use std::path::Path;
use std::process::ExitCode;

use super::keys::{Key, Published};
use super::store::Store;
use super::{Settings, run_blocking, start_thread};
use crate::config;

/// Runs `ringway publish`: exit 0 with the revision, or 1 with every error.
pub fn run(path: &Path) -> ExitCode {
    let (c, warnings) = match config::load_with_warnings(path) {
        Ok(x) => x,
        Err(errors) => {
            crate::cli::print_config_errors(&errors);
            eprintln!("{}: not published", path.display());
            return ExitCode::FAILURE;
        }
    };
    for w in &warnings {
        eprintln!("{}:{}:{}: warning: {}", w.file, w.line, w.col, w.message);
    }
    let Some(cluster) = &c.cluster else {
        eprintln!(
            "{}: no [cluster] section: publish needs its etcd endpoints and prefix",
            path.display()
        );
        return ExitCode::FAILURE;
    };
    let toml = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let host = crate::admin::hostname();
    let published = Published {
        toml,
        file: path.display().to_string(),
        published_at: jiff::Timestamp::now().to_string(),
        published_by: host.clone(),
    };
    let outcome = Settings::of(cluster, path, &host).and_then(|settings| {
        let store = Store::new(&settings)?;
        let rt = start_thread().map_err(|e| format!("cannot start the cluster thread: {e}"))?;
        let key = Key::Config.path(&settings.prefix);
        let text = serde_json::to_string(&published).map_err(|e| e.to_string())?;
        run_blocking(&rt, async move { store.put(&key, text).await })
            .unwrap_or_else(|| Err("the cluster thread stopped".into()))
    });
    match outcome {
        Ok(revision) => {
            println!("published {} as revision {revision}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: not published: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
