//! The `q` search language of `files.list`, the subset a sync client and a picker use:
//! `'<id>' in parents`, `'me' in owners`, `'<email>' in readers|writers|owners`, `trashed = true|false`,
//! `mimeType = | != | contains '…'`, `name = | != | contains '…'`, `fullText contains '…'`,
//! `modifiedTime|createdTime  < <= > >= = != '2024-01-01T00:00:00'`, `sharedWithMe`, `starred`, with `and`,
//! `or`, `not` and parentheses. Strings escape `'` and `\` with a backslash.

use chrono::{DateTime, NaiveDateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Word(String),
    Op(String),
    Open,
    Close,
}

fn tokenize(q: &str) -> Result<Vec<Tok>, ()> {
    let c: Vec<char> = q.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '\'' || ch == '"' {
            let quote = ch;
            i += 1;
            let mut s = String::new();
            loop {
                match c.get(i) {
                    None => return Err(()),
                    Some('\\') => {
                        s.push(*c.get(i + 1).ok_or(())?);
                        i += 2;
                    }
                    Some(x) if *x == quote => {
                        i += 1;
                        break;
                    }
                    Some(x) => {
                        s.push(*x);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if ch == '(' {
            out.push(Tok::Open);
            i += 1;
        } else if ch == ')' {
            out.push(Tok::Close);
            i += 1;
        } else if "=!<>".contains(ch) {
            let mut op = ch.to_string();
            if c.get(i + 1) == Some(&'=') {
                op.push('=');
                i += 1;
            }
            if op == "!" {
                return Err(());
            }
            out.push(Tok::Op(op));
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                i += 1;
            }
            out.push(Tok::Word(c[start..i].iter().collect()));
        } else {
            return Err(());
        }
    }
    Ok(out)
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    InParents(String),
    InRole(String, String),
    Trashed(bool),
    Starred(bool),
    SharedWithMe,
    Text {
        field: TextField,
        op: String,
        value: String,
    },
    Time {
        field: TimeField,
        op: String,
        value: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextField {
    Name,
    MimeType,
    FullText,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeField {
    Modified,
    Created,
}

/// What a query looks at in an item, for one user.
pub(crate) struct Subject<'a> {
    pub name: &'a str,
    pub mime_type: &'a str,
    pub text: &'a str,
    pub parent: Option<&'a str>,
    pub trashed: bool,
    pub shared_with_me: bool,
    pub modified: DateTime<Utc>,
    pub created: DateTime<Utc>,
    /// Emails with each role (`owners`, `writers`, `readers`); `me` already resolved to the user's email.
    pub has_role: &'a dyn Fn(&str, &str) -> bool,
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }
    fn or(&mut self) -> Result<Expr, ()> {
        let mut e = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, ()> {
        let mut e = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }
    fn unary(&mut self) -> Result<Expr, ()> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let e = self.or()?;
            if self.next() != Some(Tok::Close) {
                return Err(());
            }
            return Ok(e);
        }
        self.term()
    }
    fn string(&mut self) -> Result<String, ()> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            _ => Err(()),
        }
    }
    fn op(&mut self) -> Result<String, ()> {
        match self.next() {
            Some(Tok::Op(o)) => Ok(o),
            Some(Tok::Word(w)) if w == "contains" => Ok(w),
            _ => Err(()),
        }
    }
    fn boolean(&mut self) -> Result<bool, ()> {
        match self.next() {
            Some(Tok::Word(w)) if w == "true" => Ok(true),
            Some(Tok::Word(w)) if w == "false" => Ok(false),
            _ => Err(()),
        }
    }
    fn term(&mut self) -> Result<Expr, ()> {
        match self.next() {
            Some(Tok::Str(value)) => {
                if !self.keyword("in") {
                    return Err(());
                }
                self.pos += 1;
                match self.next() {
                    Some(Tok::Word(w)) if w == "parents" => Ok(Expr::InParents(value)),
                    Some(Tok::Word(w)) if ["owners", "writers", "readers"].contains(&w.as_str()) => {
                        Ok(Expr::InRole(value, w))
                    }
                    _ => Err(()),
                }
            }
            Some(Tok::Word(w)) => match w.as_str() {
                "sharedWithMe" => Ok(Expr::SharedWithMe),
                "trashed" | "starred" => {
                    let op = self.op()?;
                    let b = self.boolean()?;
                    let v = match op.as_str() {
                        "=" => b,
                        "!=" => !b,
                        _ => return Err(()),
                    };
                    Ok(if w == "trashed" {
                        Expr::Trashed(v)
                    } else {
                        Expr::Starred(v)
                    })
                }
                "name" | "mimeType" | "fullText" => {
                    let field = match w.as_str() {
                        "name" => TextField::Name,
                        "mimeType" => TextField::MimeType,
                        _ => TextField::FullText,
                    };
                    let op = self.op()?;
                    let ok = match field {
                        TextField::FullText => op == "contains",
                        _ => ["=", "!=", "contains"].contains(&op.as_str()),
                    };
                    if !ok {
                        return Err(());
                    }
                    Ok(Expr::Text {
                        field,
                        op,
                        value: self.string()?,
                    })
                }
                "modifiedTime" | "createdTime" => {
                    let op = self.op()?;
                    if op == "contains" {
                        return Err(());
                    }
                    let value = parse_time(&self.string()?)?;
                    Ok(Expr::Time {
                        field: if w == "modifiedTime" {
                            TimeField::Modified
                        } else {
                            TimeField::Created
                        },
                        op,
                        value,
                    })
                }
                _ => Err(()),
            },
            _ => Err(()),
        }
    }
}

/// RFC 3339; without a zone the time is UTC (`2024-01-01T00:00:00`).
fn parse_time(s: &str) -> Result<DateTime<Utc>, ()> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc());
        }
    }
    Err(())
}

/// Parses `q`; `Err` means Google's 400 "Invalid Value" on `q`.
pub(crate) fn parse(q: &str) -> Result<Option<Expr>, ()> {
    let toks = tokenize(q)?;
    if toks.is_empty() {
        return Ok(None);
    }
    let mut p = Parser { toks, pos: 0 };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err(());
    }
    Ok(Some(e))
}

fn compare<T: PartialOrd>(a: &T, op: &str, b: &T) -> bool {
    match op {
        "=" => a == b,
        "!=" => a != b,
        "<" => a < b,
        "<=" => a <= b,
        ">" => a > b,
        ">=" => a >= b,
        _ => false,
    }
}

impl Expr {
    /// Whether evaluating needs the item's text (`fullText contains`), which is costly to gather.
    pub fn uses_full_text(&self) -> bool {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.uses_full_text() || b.uses_full_text(),
            Expr::Not(a) => a.uses_full_text(),
            Expr::Text { field, .. } => *field == TextField::FullText,
            _ => false,
        }
    }

    /// Whether the item matches. `root` resolves the `root` alias in `'root' in parents`.
    pub fn matches(&self, s: &Subject<'_>, root: &str) -> bool {
        match self {
            Expr::And(a, b) => a.matches(s, root) && b.matches(s, root),
            Expr::Or(a, b) => a.matches(s, root) || b.matches(s, root),
            Expr::Not(a) => !a.matches(s, root),
            Expr::InParents(id) => {
                let id = if id == "root" { root } else { id.as_str() };
                s.parent == Some(id)
            }
            Expr::InRole(who, role) => (s.has_role)(who, role),
            Expr::Trashed(t) => s.trashed == *t,
            Expr::Starred(v) => !*v,
            Expr::SharedWithMe => s.shared_with_me,
            Expr::Text { field, op, value } => {
                let have = match field {
                    TextField::Name => s.name,
                    TextField::MimeType => s.mime_type,
                    TextField::FullText => {
                        let v = value.to_lowercase();
                        return s.name.to_lowercase().contains(&v) || s.text.to_lowercase().contains(&v);
                    }
                };
                match op.as_str() {
                    "contains" => match field {
                        // Drive matches name prefixes of words; a substring match is the emulator's approximation.
                        TextField::Name => have.to_lowercase().contains(&value.to_lowercase()),
                        _ => have.contains(value.as_str()),
                    },
                    "=" => have == value,
                    "!=" => have != value,
                    _ => false,
                }
            }
            Expr::Time { field, op, value } => {
                let have = match field {
                    TimeField::Modified => s.modified,
                    TimeField::Created => s.created,
                };
                compare(&have, op, value)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_clients_children_query_parses_with_escapes() {
        let e = parse(r"'abc' in parents and trashed = false and name != 'it\'s' or sharedWithMe").unwrap();
        assert!(matches!(e, Some(Expr::Or(_, _))));
    }

    #[test]
    fn malformed_queries_are_rejected() {
        for q in [
            "trashed = maybe",
            "'x' in",
            "name = ",
            "(trashed = true",
            "bogus = 'x'",
            "name > 'a'",
        ] {
            assert!(parse(q).is_err(), "{q}");
        }
    }
}
