//! The cache file on disk: written so that a crash at any moment leaves the old file or the new
//! one whole, never a mix.
//!
//! Owns: the write (a temporary file in the same directory, fsync, rename over the cache,
//! fsync of the directory, as databases do) and the read. Must not touch: what the cache holds
//! (`mirror::CacheFile`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::mirror::CacheFile;

/// The temporary file a write goes through before its rename.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `cache` to `path` atomically.
pub fn write(path: &Path, cache: &CacheFile) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(cache).map_err(std::io::Error::other)?;
    let tmp = temporary(path);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&text)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable only once the directory is.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Reads the cache at `path`: `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<CacheFile>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: not a cache file: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::mirror::{Entry, Mirror};

    fn cache(revision: i64) -> CacheFile {
        let mut m = Mirror {
            revision,
            ..Mirror::default()
        };
        m.kvs.insert(
            "/p/config".into(),
            Entry {
                value: format!("{{\"r\": {revision}}}"),
                mod_revision: revision,
            },
        );
        CacheFile::of("a", "/p", &m)
    }

    #[test]
    fn a_crash_mid_write_leaves_the_old_cache_whole() {
        let dir = std::env::temp_dir().join(format!("ringway-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("a.cluster-cache.json");
        assert_eq!(read(&path), Ok(None));
        write(&path, &cache(5)).unwrap_or_else(|e| panic!("{e}"));
        // A writer killed mid-way leaves a partial temporary file and never renames it.
        std::fs::write(temporary(&path), b"{\"version\": 1, \"na").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&path), Ok(Some(cache(5))));
        // The next write goes through the same temporary file and replaces the cache whole.
        write(&path, &cache(9)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&path), Ok(Some(cache(9))));
        assert!(!temporary(&path).exists());
        std::fs::write(&path, b"{\"version\"").unwrap_or_else(|e| panic!("{e}"));
        assert!(read(&path).is_err_and(|e| e.contains("not a cache file")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
