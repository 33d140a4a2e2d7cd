//! Pure: which precompressed sibling of a file (`name.br`, `name.gz`) a client's
//! `Accept-Encoding` lets us send, as nginx `gzip_static` and Caddy `precompressed` do.
//!
//! Owns: reading the codings and their weights (RFC 9110 12.5.3) and the choice between the
//! siblings that exist. Must not touch: the file system (the caller says which siblings exist).

/// A content coding Ringway serves from a precompressed sibling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Brotli, from `name.br`.
    Br,
    /// gzip, from `name.gz`.
    Gzip,
}

impl Encoding {
    /// Every coding, most preferred first when the client weighs them alike.
    pub const ALL: [Encoding; 2] = [Encoding::Br, Encoding::Gzip];

    /// The `Content-Encoding` value.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// What the sibling's name adds to the file's name.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Br => ".br",
            Encoding::Gzip => ".gz",
        }
    }

    fn answers_to(self, coding: &str) -> bool {
        match self {
            Encoding::Br => coding.eq_ignore_ascii_case("br"),
            // "x-gzip" is gzip (RFC 9110 8.4.1.3).
            Encoding::Gzip => coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip"),
        }
    }
}

/// Which siblings exist, as a set of [`Encoding`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Siblings {
    /// `name.br` is a readable file in the directory.
    pub br: bool,
    /// `name.gz` is a readable file in the directory.
    pub gzip: bool,
}

impl Siblings {
    /// Whether the sibling for `e` exists.
    pub fn has(self, e: Encoding) -> bool {
        match e {
            Encoding::Br => self.br,
            Encoding::Gzip => self.gzip,
        }
    }

    /// Whether any sibling exists (the answers then vary with `Accept-Encoding`).
    pub fn any(self) -> bool {
        self.br || self.gzip
    }
}

/// The coding to send: among the siblings that exist, the one the client weighs highest
/// (ties go to brotli, the smaller); none when the client accepts none of them (`q=0`
/// refuses a coding, and a coding it does not name is refused unless `*` accepts it).
pub fn choose(accept_encoding: Option<&str>, siblings: Siblings) -> Option<Encoding> {
    let field = accept_encoding?;
    let mut best: Option<(Encoding, u16)> = None;
    for e in Encoding::ALL {
        if !siblings.has(e) {
            continue;
        }
        let q = weight(field, e);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((e, q));
        }
    }
    best.map(|(e, _)| e)
}

/// The client's weight for `e`, in thousandths: its own entry's, else `*`'s, else 0.
fn weight(field: &str, e: Encoding) -> u16 {
    let mut star = None;
    for element in field.split(',') {
        let mut parts = element.split(';');
        let coding = parts.next().unwrap_or("").trim_matches([' ', '\t']);
        if coding.is_empty() {
            continue;
        }
        let mut q = Some(1000);
        for param in parts {
            let param = param.trim_matches([' ', '\t']);
            if let Some((name, value)) = param.split_once('=')
                && name.trim_matches([' ', '\t']).eq_ignore_ascii_case("q")
            {
                q = qvalue(value.trim_matches([' ', '\t']));
            }
        }
        // An entry whose weight does not parse is left out, as if it were not there.
        let Some(q) = q else { continue };
        if e.answers_to(coding) {
            return q;
        }
        if coding == "*" {
            star = Some(q);
        }
    }
    star.unwrap_or(0)
}

/// A `qvalue` (RFC 9110 12.4.2: `0`, `0.` and up to three digits, or `1`, `1.000`) in
/// thousandths.
fn qvalue(s: &str) -> Option<u16> {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in fraction.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}
