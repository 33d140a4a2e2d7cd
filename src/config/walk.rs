//! A typed walk over a `toml_edit` document that records every error with its byte offset.
//!
//! The section parsers in `parse.rs` ask this module for typed values; a wrong value becomes an
//! error here and `None` there, so one pass over the file collects every error.

use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use super::values;

/// Errors collected so far, each at a byte offset into the source, and the variables that
/// `${NAME}` in addresses expands to.
pub(crate) struct Ctx<'v> {
    /// `(byte offset, message)`, in the order found; sorted by offset at the end.
    pub(crate) errors: Vec<(usize, String)>,
    /// Looks up `${NAME}` (see [`super::Vars`]); handed in by the caller, so parsing stays pure.
    pub(crate) vars: &'v super::Vars,
}

/// A node of the document: a top-level item or a value nested in an array or inline table.
#[derive(Clone, Copy)]
pub(crate) enum Node<'a> {
    /// A table entry (may be a table or an array of tables).
    Item(&'a Item),
    /// An array element or inline-table entry.
    Value(&'a Value),
}

impl<'a> Node<'a> {
    pub(crate) fn value(self) -> Option<&'a Value> {
        match self {
            Node::Item(i) => i.as_value(),
            Node::Value(v) => Some(v),
        }
    }

    fn table_like(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(i) => i.as_table_like(),
            Node::Value(Value::InlineTable(t)) => Some(t),
            Node::Value(_) => None,
        }
    }

    fn span_start(self) -> Option<usize> {
        match self {
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
        }
        .map(|r| r.start)
    }

    /// "a string", "an integer", … for "expected X, found Y" messages.
    pub(crate) fn found(self) -> &'static str {
        let name = match self {
            Node::Item(i) => i.type_name(),
            Node::Value(v) => v.type_name(),
        };
        match name {
            "string" => "a string",
            "integer" => "an integer",
            "float" => "a float",
            "boolean" => "a boolean",
            "datetime" => "a date-time",
            "array" => "an array",
            "table" | "inline table" => "a table",
            "array of tables" => "an array of tables",
            _ => "nothing",
        }
    }
}

/// One `key = value` (or an array element, named after its array's key).
#[derive(Clone, Copy)]
pub(crate) struct Field<'a> {
    /// The key as written (for messages).
    pub(crate) key: &'a str,
    /// Offset of the key.
    pub(crate) key_at: usize,
    /// The value.
    pub(crate) node: Node<'a>,
    /// Offset of the value (the key's when the value has no span).
    pub(crate) at: usize,
}

/// A table or inline table being read, with where to report errors about it as a whole.
#[derive(Clone)]
pub(crate) struct Tbl<'a> {
    t: &'a dyn TableLike,
    /// Offset of the table header, inline table or key that introduced it.
    pub(crate) at: usize,
    /// How messages name it, e.g. "[pool.api]".
    pub(crate) label: String,
}

impl<'a> Tbl<'a> {
    /// Wraps a table read at offset `at`.
    pub(crate) fn new(t: &'a dyn TableLike, at: usize, label: String) -> Self {
        Tbl { t, at, label }
    }

    /// The entry for `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<Field<'a>> {
        let (k, item) = self.t.get_key_value(key)?;
        let key_at = k.span().map_or(self.at, |r| r.start);
        let node = Node::Item(item);
        Some(Field {
            key: k.get(),
            key_at,
            node,
            at: node.span_start().unwrap_or(key_at),
        })
    }

    /// Keys in file order.
    pub(crate) fn keys(&self) -> Vec<&'a str> {
        let t: &'a dyn TableLike = self.t;
        t.iter().map(|(k, _)| k).collect()
    }

    /// Reports every key not in `known`, with a suggestion when one is close.
    pub(crate) fn check_keys(&self, cx: &mut Ctx, known: &[&str]) {
        for key in self.keys() {
            if known.contains(&key) {
                continue;
            }
            let at = self.get(key).map_or(self.at, |f| f.key_at);
            let hint = values::suggest(key, known)
                .map(|k| format!("; did you mean `{k}`?"))
                .unwrap_or_default();
            cx.err(at, format!("unknown key `{key}` in {}{hint}", self.label));
        }
    }
}

impl<'v> Ctx<'v> {
    /// No errors yet; `${NAME}` looked up in `vars`.
    pub(crate) fn new(vars: &'v super::Vars) -> Self {
        Ctx {
            errors: Vec::new(),
            vars,
        }
    }

    /// Records an error at byte offset `at`.
    pub(crate) fn err(&mut self, at: usize, msg: impl Into<String>) {
        self.errors.push((at, msg.into()));
    }

    fn type_err(&mut self, f: Field<'_>, expected: &str) {
        self.err(
            f.at,
            format!("`{}`: expected {expected}, found {}", f.key, f.node.found()),
        );
    }

    /// Reports a missing required key of `t`.
    pub(crate) fn missing(&mut self, t: &Tbl<'_>, key: &str) {
        self.err(t.at, format!("{} has no `{key}`; it is required", t.label));
    }

    /// A string value.
    pub(crate) fn str<'a>(&mut self, f: Field<'a>) -> Option<&'a str> {
        match f.node.value().and_then(Value::as_str) {
            Some(s) => Some(s),
            None => {
                self.type_err(f, "a string");
                None
            }
        }
    }

    /// A non-empty string value.
    pub(crate) fn nonempty_str<'a>(&mut self, f: Field<'a>) -> Option<&'a str> {
        let s = self.str(f)?;
        if s.trim().is_empty() {
            self.err(f.at, format!("`{}` must not be empty", f.key));
            return None;
        }
        Some(s)
    }

    /// A boolean value.
    pub(crate) fn bool(&mut self, f: Field<'_>) -> Option<bool> {
        match f.node.value().and_then(Value::as_bool) {
            Some(b) => Some(b),
            None => {
                self.type_err(f, "a boolean (true or false)");
                None
            }
        }
    }

    /// An integer value.
    pub(crate) fn int(&mut self, f: Field<'_>) -> Option<i64> {
        match f.node.value().and_then(Value::as_integer) {
            Some(i) => Some(i),
            None => {
                self.type_err(f, "an integer");
                None
            }
        }
    }

    /// An integer in `lo..=hi`.
    pub(crate) fn int_in(&mut self, f: Field<'_>, lo: i64, hi: i64) -> Option<i64> {
        let i = self.int(f)?;
        if i < lo || i > hi {
            let msg = if i < 0 && lo >= 0 {
                format!("`{}` must not be negative, found {i}", f.key)
            } else {
                format!("`{}` must be between {lo} and {hi}, found {i}", f.key)
            };
            self.err(f.at, msg);
            return None;
        }
        Some(i)
    }

    /// An integer in `lo..=hi` converted to `u32`.
    pub(crate) fn u32_in(&mut self, f: Field<'_>, lo: u32, hi: u32) -> Option<u32> {
        self.int_in(f, i64::from(lo), i64::from(hi))
            .and_then(|i| u32::try_from(i).ok())
    }

    /// A number (integer or float), as `f64`.
    pub(crate) fn number(&mut self, f: Field<'_>) -> Option<f64> {
        match f.node.value() {
            Some(Value::Float(x)) => Some(*x.value()),
            // Precision loss only beyond 2^53, far outside any valid setting.
            Some(Value::Integer(i)) => Some(*i.value() as f64),
            _ => {
                self.type_err(f, "a number");
                None
            }
        }
    }

    /// A humantime duration string; `positive` rejects zero.
    pub(crate) fn duration(&mut self, f: Field<'_>, positive: bool) -> Option<Duration> {
        let Some(s) = f.node.value().and_then(Value::as_str) else {
            self.type_err(f, "a duration string such as \"30s\"");
            return None;
        };
        match values::duration(s) {
            Ok(d) if positive && d.is_zero() => {
                self.err(f.at, format!("`{}` must be longer than zero", f.key));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(f.at, format!("`{}`: {e}", f.key));
                None
            }
        }
    }

    /// A byte size: an integer number of bytes or a string such as "64KiB".
    pub(crate) fn size(&mut self, f: Field<'_>) -> Option<u64> {
        match f.node.value() {
            Some(Value::Integer(i)) => match u64::try_from(*i.value()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.err(f.at, format!("`{}` must not be negative", f.key));
                    None
                }
            },
            Some(Value::String(s)) => match values::size(s.value()) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.err(f.at, format!("`{}`: {e}", f.key));
                    None
                }
            },
            _ => {
                self.type_err(f, "a size (bytes, or a string such as \"64KiB\")");
                None
            }
        }
    }

    /// One of a fixed set of strings; returns its index.
    pub(crate) fn choice(&mut self, f: Field<'_>, options: &[&str]) -> Option<usize> {
        let s = self.str(f)?;
        if let Some(i) = options.iter().position(|o| *o == s) {
            return Some(i);
        }
        let list = options
            .iter()
            .map(|o| format!("\"{o}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let hint = values::suggest(s, options)
            .map(|o| format!("; did you mean `{o}`?"))
            .unwrap_or_default();
        self.err(
            f.at,
            format!("`{}` must be one of {list}, found \"{s}\"{hint}", f.key),
        );
        None
    }

    /// A table or inline table.
    pub(crate) fn table<'a>(&mut self, f: Field<'a>, label: String) -> Option<Tbl<'a>> {
        match f.node.table_like() {
            Some(t) => Some(Tbl::new(t, f.at, label)),
            None => {
                self.type_err(f, "a table");
                None
            }
        }
    }

    /// An array of tables (`[[x]]`) or an array of inline tables.
    pub(crate) fn tables<'a>(&mut self, f: Field<'a>, label: &str) -> Option<Vec<Tbl<'a>>> {
        match f.node {
            Node::Item(Item::ArrayOfTables(a)) => Some(
                a.iter()
                    .map(|t| {
                        let at = t.span().map_or(f.at, |r| r.start);
                        Tbl::new(t, at, label.to_string())
                    })
                    .collect(),
            ),
            Node::Item(Item::Table(_)) => {
                self.err(
                    f.key_at,
                    format!("`{0}` must be an array of tables: write [[{0}]]", f.key),
                );
                None
            }
            _ => {
                let Some(arr) = f.node.value().and_then(Value::as_array) else {
                    self.type_err(f, "an array of tables");
                    return None;
                };
                let mut out = Vec::new();
                for v in arr.iter() {
                    let el = element(f, v);
                    match v.as_inline_table() {
                        Some(t) => out.push(Tbl::new(t, el.at, label.to_string())),
                        None => self.type_err(el, "a table"),
                    }
                }
                Some(out)
            }
        }
    }

    /// The elements of an array value.
    pub(crate) fn array<'a>(&mut self, f: Field<'a>) -> Option<Vec<Field<'a>>> {
        match f.node.value().and_then(Value::as_array) {
            Some(arr) => Some(arr.iter().map(|v| element(f, v)).collect()),
            None => {
                self.type_err(f, "an array");
                None
            }
        }
    }
}

/// An array element as a field named after its array.
fn element<'a>(parent: Field<'a>, v: &'a Value) -> Field<'a> {
    let node = Node::Value(v);
    Field {
        key: parent.key,
        key_at: parent.key_at,
        node,
        at: node.span_start().unwrap_or(parent.at),
    }
}

/// Is this field's value a table (so that callers can branch on the shape)?
pub(crate) fn is_table(f: Field<'_>) -> bool {
    f.node.table_like().is_some()
}

/// Is this field's value a string?
pub(crate) fn is_str(f: Field<'_>) -> bool {
    f.node.value().is_some_and(Value::is_str)
}
