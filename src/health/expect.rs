//! Judging a health check's answer, pure: whether its status passes, and the words the status
//! page and the logs show for it.
//!
//! Owns: the verdict and its detail text. Must not touch: sockets (`check.rs` reads the answer).

use crate::config::ExpectStatus;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the check passed.
    pub passed: bool,
    /// What was seen: `"200"`, `"expected 2xx, got 503"`, `"timeout"`, `"connection refused"`.
    pub detail: String,
}

impl Verdict {
    /// A failed check, described by `detail`.
    pub fn failed(detail: impl Into<String>) -> Verdict {
        Verdict {
            passed: false,
            detail: detail.into(),
        }
    }
}

/// The verdict on an answer with `status`.
pub fn judge(expect: &ExpectStatus, status: u16) -> Verdict {
    if expect.matches(status) {
        Verdict {
            passed: true,
            detail: status.to_string(),
        }
    } else {
        Verdict::failed(format!("expected {expect}, got {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let two = ExpectStatus::default();
        assert_eq!(
            judge(&two, 204),
            Verdict {
                passed: true,
                detail: "204".into()
            }
        );
        assert_eq!(judge(&two, 503), Verdict::failed("expected 2xx, got 503"));
        let list: ExpectStatus = "200,3xx".parse().unwrap();
        assert!(judge(&list, 302).passed);
        assert_eq!(judge(&list, 201), Verdict::failed("expected 200,3xx, got 201"));
    }
}
