//! Pure: which file under a static route's directory a request path names, or why it names none.
//!
//! Owns: removing the route's prefix, percent-decoding each segment once, and refusing every
//! segment that could climb out of the directory or name something other than one entry.
//! Must not touch: the file system (symlinks are judged by `open.rs` on the real path).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;

/// A request path mapped under the directory: relative, one directory entry per segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The entries below the directory (empty: the directory itself).
    pub relative: PathBuf,
    /// The request path ended with `/`: a directory was asked for as such.
    pub trailing_slash: bool,
}

/// Why a request path names no file: every case is answered 404 and logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The path does not start with the route's prefix.
    OutsidePrefix,
    /// A segment decodes to `.` or `..`.
    DotSegment,
    /// A segment decodes to something holding `/` or `\`.
    Separator,
    /// A segment decodes to something holding NUL.
    Nul,
}

impl Refusal {
    /// A few words for the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::OutsidePrefix => "not under the route's prefix",
            Refusal::DotSegment => "a dot segment",
            Refusal::Separator => "an encoded slash or a backslash",
            Refusal::Nul => "an encoded NUL",
        }
    }
}

/// Maps the request `path` (without query) of a route whose prefix is `prefix`.
///
/// Each segment is percent-decoded exactly once, so `%252e%252e` is the name `%2e%2e` (which
/// simply does not exist), never `..`. Empty segments (`a//b`) are skipped, as nginx merges
/// slashes. Names need not be UTF-8.
pub fn map(path: &str, prefix: &str) -> Result<Mapped, Refusal> {
    let rest = path.strip_prefix(prefix).ok_or(Refusal::OutsidePrefix)?;
    let mut relative = PathBuf::new();
    for segment in rest.split('/').filter(|s| !s.is_empty()) {
        let decoded: Vec<u8> = percent_decode_str(segment).collect();
        if decoded == b"." || decoded == b".." {
            return Err(Refusal::DotSegment);
        }
        if decoded.iter().any(|&b| b == b'/' || b == b'\\') {
            return Err(Refusal::Separator);
        }
        if decoded.contains(&0) {
            return Err(Refusal::Nul);
        }
        relative.push(OsStr::from_bytes(&decoded));
    }
    Ok(Mapped {
        relative,
        trailing_slash: path.ends_with('/'),
    })
}

/// The `Location` of the redirect that adds the slash to a directory's path, keeping the query.
///
/// Leading slashes are merged into one, so that a path like `//host/dir` cannot become a
/// protocol-relative redirect to another site.
pub fn slash_redirect(path: &str, query: Option<&str>) -> String {
    let mut location = String::with_capacity(path.len() + 2 + query.map_or(0, |q| q.len() + 1));
    location.push('/');
    location.push_str(path.trim_start_matches('/'));
    location.push('/');
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    location
}
