//! The access log: one line per request, nginx `combined` plus upstream fields, or JSON.
//!
//! Owns: the line formats and the sink (stdout or an appended file). A line is written with one
//! `write` call so that lines from several workers never interleave.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Uri, Version};
use tokio::time::Instant;

use crate::config::{AccessLogFormat, AccessLogTarget, LogConfig};

enum Sink {
    Stdout,
    File(File),
}

/// An open access log.
pub struct AccessLog {
    format: AccessLogFormat,
    sink: Sink,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("format", &self.format).finish()
    }
}

impl AccessLog {
    /// Opens the log the config asks for; `None` when it is off.
    pub fn open(cfg: &LogConfig) -> std::io::Result<Option<Arc<AccessLog>>> {
        let sink = match &cfg.access {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => Sink::Stdout,
            AccessLogTarget::File(p) => {
                Sink::File(std::fs::OpenOptions::new().create(true).append(true).open(p)?)
            }
        };
        Ok(Some(Arc::new(AccessLog {
            format: cfg.format,
            sink,
        })))
    }

    fn write_line(&self, line: &[u8]) {
        let res = match &self.sink {
            Sink::Stdout => std::io::stdout().lock().write_all(line),
            Sink::File(f) => (&*f).write_all(line),
        };
        if let Err(e) = res {
            tracing::warn!("access log write failed: {e}");
        }
    }
}

/// What the log line of one request needs, captured when the request arrives.
pub struct AccessRecord {
    /// The log to write to.
    pub log: Arc<AccessLog>,
    /// When the request head was received.
    pub start: Instant,
    /// Wall-clock time of the request.
    pub wall: SystemTime,
    /// Client address.
    pub client: IpAddr,
    /// Request method.
    pub method: Method,
    /// Request target as received.
    pub uri: Uri,
    /// The request's authority or `Host` as received (the log shows the host routed on: no
    /// port, lower case).
    pub host: Option<HeaderValue>,
    /// Protocol version.
    pub version: Version,
    /// `Referer`.
    pub referer: Option<HeaderValue>,
    /// `User-Agent`.
    pub user_agent: Option<HeaderValue>,
    /// Request id.
    pub request_id: HeaderValue,
    /// Route name, if one matched.
    pub route: Option<String>,
    /// Response status.
    pub status: u16,
    /// Upstream server address, if one answered.
    pub upstream: Option<String>,
    /// Time until the upstream's response head.
    pub upstream_time: Option<Duration>,
    /// Time from `start` to the end of the response, when already measured (by the live
    /// figures, so that the clock is read once at the end).
    pub total: Option<Duration>,
}

fn push_escaped(out: &mut String, bytes: &[u8], json: bool) {
    for &b in bytes {
        match b {
            b'"' if json => out.push_str("\\\""),
            b'\\' if json => out.push_str("\\\\"),
            b'"' | b'\\' => {
                let _ = write!(out, "\\x{b:02X}");
            }
            0x20..=0x7e => out.push(b as char),
            _ if json => {
                let _ = write!(out, "\\u{:04x}", b);
            }
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Civil date (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// UTC parts of a wall-clock time: (year, month, day, hour, minute, second, millisecond).
fn utc_parts(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, mo, day) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    (y, mo, day, s / 3600, (s / 60) % 60, s % 60, d.subsec_millis())
}

/// nginx's `$time_local` in UTC: `23/Nov/2026:19:22:01 +0000`.
pub fn time_local(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = utc_parts(t);
    format!(
        "{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02} +0000",
        MONTHS[(mo - 1) as usize]
    )
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = utc_parts(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

impl AccessRecord {
    /// Formats and writes the line; `bytes` is the body size sent, `complete` whether it all went.
    pub fn write(&self, bytes: u64, complete: bool) {
        let line = match self.log.format {
            AccessLogFormat::Combined => self.combined(bytes),
            AccessLogFormat::Json => self.json(bytes, complete),
        };
        self.log.write_line(line.as_bytes());
    }

    /// The request target as nginx's `$request_uri`: path and query (also for HTTP/2).
    fn target(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    /// The host the request was routed on: without port, lower-cased; empty when none was sent.
    fn routed_host(&self) -> String {
        self.host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .map(|h| crate::route::host_without_port(h).to_ascii_lowercase())
            .unwrap_or_default()
    }

    fn total_secs(&self) -> f64 {
        self.total.unwrap_or_else(|| self.start.elapsed()).as_secs_f64()
    }

    /// The `combined` line with `upstream= rt= urt= rid=` after it.
    pub fn combined(&self, bytes: u64) -> String {
        let mut out = String::with_capacity(256);
        let _ = write!(out, "{} - - [{}] \"", self.client, time_local(self.wall));
        push_escaped(&mut out, self.method.as_str().as_bytes(), false);
        out.push(' ');
        push_escaped(&mut out, self.target().as_bytes(), false);
        let _ = write!(
            out,
            " {}\" {} {} \"",
            version_str(self.version),
            self.status,
            bytes
        );
        match &self.referer {
            Some(r) => push_escaped(&mut out, r.as_bytes(), false),
            None => out.push('-'),
        }
        out.push_str("\" \"");
        match &self.user_agent {
            Some(u) => push_escaped(&mut out, u.as_bytes(), false),
            None => out.push('-'),
        }
        let _ = write!(
            out,
            "\" upstream={} rt={:.3} urt=",
            self.upstream.as_deref().unwrap_or("-"),
            self.total_secs()
        );
        match self.upstream_time {
            Some(t) => {
                let _ = write!(out, "{:.3}", t.as_secs_f64());
            }
            None => out.push('-'),
        }
        out.push_str(" rid=");
        push_escaped(&mut out, self.request_id.as_bytes(), false);
        out.push('\n');
        out
    }

    /// One JSON object.
    pub fn json(&self, bytes: u64, complete: bool) -> String {
        fn field(out: &mut String, name: &str, v: &[u8]) {
            let _ = write!(out, ",\"{name}\":\"");
            push_escaped(out, v, true);
            out.push('"');
        }
        let mut out = String::with_capacity(320);
        let _ = write!(out, "{{\"time\":\"{}\"", rfc3339(self.wall));
        field(&mut out, "remote_addr", self.client.to_string().as_bytes());
        field(&mut out, "method", self.method.as_str().as_bytes());
        field(&mut out, "host", self.routed_host().as_bytes());
        field(&mut out, "uri", self.target().as_bytes());
        field(&mut out, "protocol", version_str(self.version).as_bytes());
        let _ = write!(
            out,
            ",\"status\":{},\"bytes\":{bytes},\"complete\":{complete}",
            self.status
        );
        field(
            &mut out,
            "referer",
            self.referer.as_ref().map_or(b"" as &[u8], HeaderValue::as_bytes),
        );
        field(
            &mut out,
            "user_agent",
            self.user_agent
                .as_ref()
                .map_or(b"" as &[u8], HeaderValue::as_bytes),
        );
        field(&mut out, "route", self.route.as_deref().unwrap_or("").as_bytes());
        match &self.upstream {
            Some(u) => field(&mut out, "upstream", u.as_bytes()),
            None => out.push_str(",\"upstream\":null"),
        }
        let _ = write!(out, ",\"rt\":{:.6}", self.total_secs());
        match self.upstream_time {
            Some(t) => {
                let _ = write!(out, ",\"urt\":{:.6}", t.as_secs_f64());
            }
            None => out.push_str(",\"urt\":null"),
        }
        field(&mut out, "rid", self.request_id.as_bytes());
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_461_721); // 2026-11-23T19:22:01Z
        assert_eq!(time_local(t), "23/Nov/2026:19:22:01 +0000");
        assert_eq!(rfc3339(t), "2026-11-23T19:22:01.000Z");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn json_host_is_the_routed_host() {
        let log = Arc::new(AccessLog {
            format: AccessLogFormat::Json,
            sink: Sink::Stdout,
        });
        let mut record = AccessRecord {
            log,
            start: Instant::now(),
            wall: UNIX_EPOCH,
            client: IpAddr::from([127, 0, 0, 1]),
            method: Method::GET,
            uri: Uri::from_static("/x"),
            host: Some(HeaderValue::from_static("API.Example.com:8443")),
            version: Version::HTTP_11,
            referer: None,
            user_agent: None,
            request_id: HeaderValue::from_static("r1"),
            route: Some("api.example.com/".into()),
            status: 200,
            upstream: None,
            upstream_time: None,
            total: None,
        };
        let line = record.json(0, true);
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(v["host"], "api.example.com", "{line}");
        assert_eq!(v["route"], "api.example.com/", "{line}");
        record.host = Some(HeaderValue::from_static("[::1]:80"));
        assert!(record.json(0, true).contains("\"host\":\"[::1]\""));
        record.host = None;
        assert!(record.json(0, true).contains("\"host\":\"\""));
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        push_escaped(&mut s, b"a\"b\x01", false);
        assert_eq!(s, "a\\x22b\\x01");
        let mut s = String::new();
        push_escaped(&mut s, b"a\"b\\", true);
        assert_eq!(s, "a\\\"b\\\\");
    }
}
