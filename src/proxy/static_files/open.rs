//! Adapter: finds and opens the file a mapped request path names, and never one outside the
//! route's directory.
//!
//! Owns: the directory opened at load, opening below it so that the kernel refuses every way
//! out (`..`, symlinks pointing outside), `index.html` for directories, the precompressed
//! siblings, and the content type. Blocking file system calls: [`Wait`] says how far they may
//! wait.
//! Must not touch: the request's conditions and the response (`mod.rs`).

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use http::HeaderValue;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::conditional::Validators;
use super::encoding::{self, Encoding, Siblings};
use super::path::Mapped;

/// A static route's directory, opened when the configuration is loaded.
///
/// Files are opened relative to the directory's descriptor with `openat2(RESOLVE_BENEATH)`,
/// so the kernel itself refuses any way out (`..`, a symlink pointing outside) at the cost of a
/// plain open. A `static_dir` that is a symlink is therefore followed at load: after
/// re-pointing it (a new release), reload.
#[derive(Debug)]
pub struct Site {
    /// The directory as configured (relative paths already made absolute by the loader).
    pub dir: PathBuf,
    /// Its canonical path at load: the check of the slow way (`open_checked`).
    pub root: PathBuf,
    /// The directory itself (`O_PATH`).
    dir_fd: OwnedFd,
}

impl Site {
    /// Opens `dir`; fails when it does not exist or is not a directory.
    pub fn new(dir: &Path) -> io::Result<Site> {
        let dir_fd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Site {
            dir: dir.to_path_buf(),
            root: std::fs::canonicalize(dir)?,
            dir_fd,
        })
    }
}

/// How far the file system calls may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// On the worker's event loop: only what the kernel's lookup cache answers at once
    /// (`RESOLVE_CACHED`); anything else is [`Lookup::WouldBlock`].
    CachedOnly,
    /// In the blocking pool: whatever it takes.
    Blocking,
}

/// A file ready to be sent.
#[derive(Debug)]
pub struct Opened {
    /// The open file: the one asked for, or its precompressed sibling.
    pub file: File,
    /// Size, time and entity tag of that file.
    pub validators: Validators,
    /// The content type of the file asked for (a sibling has its original's type).
    pub content_type: HeaderValue,
    /// The sibling's coding, when a sibling is sent.
    pub encoding: Option<Encoding>,
    /// A sibling exists: the answer depends on `Accept-Encoding`.
    pub vary: bool,
}

/// What looking up a mapped path gives.
#[derive(Debug)]
pub enum Lookup {
    /// A regular file.
    File(Opened),
    /// A directory asked for without the trailing slash.
    Directory,
    /// Nothing to serve (missing, not a regular file, a file asked for as a directory).
    NotFound,
    /// The process may not read it.
    Forbidden,
    /// The real path is outside the directory (a symlink pointing out): refused.
    Escaped(PathBuf),
    /// [`Wait::CachedOnly`] could not finish without waiting: ask again with
    /// [`Wait::Blocking`] off the event loop.
    WouldBlock,
}

/// Finds what `mapped` names under `site`, choosing a precompressed sibling that
/// `accept_encoding` accepts.
pub fn find(site: &Site, mapped: &Mapped, accept_encoding: Option<&str>, wait: Wait) -> Lookup {
    let mut path = mapped.relative.clone();
    if mapped.trailing_slash {
        // A directory's index, opened at once (one open, as nginx's `index` does): a missing
        // directory, a file asked for as one (ENOTDIR) or a directory without an index is 404.
        path.push("index.html");
    }
    let (mut file, mut meta) = match open_inside(site, &path, wait) {
        Ok(pair) => pair,
        Err(found) => return found,
    };
    if meta.is_dir() && !mapped.trailing_slash {
        return Lookup::Directory;
    }
    if !meta.is_file() {
        return Lookup::NotFound;
    }
    let siblings = Siblings {
        br: is_file(site, &with_suffix(&path, Encoding::Br)),
        gzip: is_file(site, &with_suffix(&path, Encoding::Gzip)),
    };
    let mut encoding = encoding::choose(accept_encoding, siblings);
    if let Some(e) = encoding {
        match open_inside(site, &with_suffix(&path, e), wait) {
            Ok((f, m)) if m.is_file() => (file, meta) = (f, m),
            Err(Lookup::WouldBlock) => return Lookup::WouldBlock,
            Ok(_) | Err(_) => {
                tracing::debug!("static: sibling {} of {} not served", e.suffix(), path.display());
                encoding = None;
            }
        }
    }
    Lookup::File(Opened {
        file,
        validators: Validators::of(meta.len(), meta.modified().ok()),
        content_type: content_type(&path),
        encoding,
        vary: siblings.any(),
    })
}

/// Opens `relative` under the site's directory, never a file outside it.
fn open_inside(site: &Site, relative: &Path, wait: Wait) -> Result<(File, Metadata), Lookup> {
    let relative = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    // O_NONBLOCK: a FIFO put in the directory must not hang the open (regular files ignore it).
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    if wait == Wait::CachedOnly {
        resolve |= ResolveFlags::CACHED;
    }
    let file = match rustix::fs::openat2(&site.dir_fd, relative, flags, Mode::empty(), resolve) {
        Ok(fd) => File::from(fd),
        // EAGAIN: not in the lookup cache; EINVAL: a kernel before 5.12 (no RESOLVE_CACHED);
        // EXDEV and ENOSYS: see below, done in the blocking pool.
        Err(Errno::AGAIN | Errno::INVAL | Errno::XDEV | Errno::NOSYS) if wait == Wait::CachedOnly => {
            return Err(Lookup::WouldBlock);
        }
        // EXDEV: the way leaves the directory, or passes an absolute symlink (which may still
        // point inside); ENOSYS: a kernel before 5.6. Decided on the real path instead.
        Err(Errno::XDEV | Errno::NOSYS) => return open_checked(site, relative, flags),
        Err(e) => return Err(missing(&e.into(), relative)),
    };
    let meta = file.metadata().map_err(|e| missing(&e, relative))?;
    Ok((file, meta))
}

/// The slow way: open following every symlink, then refuse the file unless its real path is
/// under the directory's canonical root.
fn open_checked(site: &Site, relative: &Path, flags: OFlags) -> Result<(File, Metadata), Lookup> {
    let file = rustix::fs::openat(&site.dir_fd, relative, flags, Mode::empty())
        .map(File::from)
        .map_err(|e| missing(&e.into(), relative))?;
    let real = real_path(&file, &site.dir.join(relative)).map_err(|e| missing(&e, relative))?;
    if !real.starts_with(&site.root) {
        return Err(Lookup::Escaped(real));
    }
    let meta = file.metadata().map_err(|e| missing(&e, relative))?;
    Ok((file, meta))
}

/// Where the open file really is: the kernel's name for the descriptor (the file opened, even
/// if a symlink on the way changed since), or the resolved `path` where `/proc` is missing.
fn real_path(file: &File, path: &Path) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).or_else(|_| std::fs::canonicalize(path))
}

fn missing(e: &io::Error, relative: &Path) -> Lookup {
    match e.kind() {
        io::ErrorKind::PermissionDenied => Lookup::Forbidden,
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidFilename => {
            Lookup::NotFound
        }
        _ => {
            // ELOOP, EIO and the like: the client gets a 404 and no detail; the operator the log.
            tracing::warn!("static: cannot open {}: {e}", relative.display());
            Lookup::NotFound
        }
    }
}

/// Whether `relative` is a regular file (symlinks followed: one pointing outside is refused
/// when it is opened).
fn is_file(site: &Site, relative: &Path) -> bool {
    rustix::fs::statat(&site.dir_fd, relative, AtFlags::empty())
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
}

fn with_suffix(path: &Path, e: Encoding) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(e.suffix());
    PathBuf::from(name)
}

/// The content type of `path` by its extension (`mime_guess`); text types are UTF-8.
pub fn content_type(path: &Path) -> HeaderValue {
    let Some(essence) = mime_guess::from_path(path).first_raw() else {
        return HeaderValue::from_static("application/octet-stream");
    };
    if essence.starts_with("text/") || essence == "application/javascript" {
        HeaderValue::from_str(&format!("{essence}; charset=utf-8"))
    } else {
        HeaderValue::from_str(essence)
    }
    .unwrap_or(HeaderValue::from_static("application/octet-stream"))
}
