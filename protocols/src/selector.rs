//! Label and field selectors, as `?labelSelector=` / `?fieldSelector=` and `metav1.LabelSelector`.
//!
//! The grammar, the validation and the error texts follow apimachinery's `labels` and `fields`
//! packages, because kubectl prints the server's message verbatim. Invariants:
//! - a [`LabelSelector`] holds its requirements sorted by key (stable); parsed ones have sorted,
//!   de-duplicated values, so `parse(s.to_string()) == s`;
//! - a parsed [`FieldSelector`] holds its terms sorted by their escaped text, so the same holds;
//! - a field missing from an object reads as the empty string, as upstream's `fields.Set.Get`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// Why a selector could not be parsed, built or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector requirement is malformed. The cause is part of the message, as upstream
    /// prints it, so it is not also reported as a `source`.
    #[error("unable to parse requirement: {0}")]
    Requirement(Box<SelectorError>),
    /// The parser met a token the grammar does not allow there.
    #[error("found '{found}', expected: {expected}")]
    UnexpectedToken {
        /// The literal that was found (empty at the end of the input).
        found: String,
        /// What the grammar allows at that point.
        expected: &'static str,
    },
    /// A key, value or value list that upstream's `NewRequirement` rejects (a `field.Invalid`).
    #[error("{path}: Invalid value: {value}: {detail}")]
    Invalid {
        /// Upstream's field path (`<nil>` for a key read by the parser, `values[0][key]`, ...).
        path: String,
        /// The offending value, quoted as Go's `%q` / `%#v` would.
        value: String,
        /// The validation messages, joined by `; `.
        detail: String,
    },
    /// A `matchExpressions` operator other than In, NotIn, Exists and DoesNotExist.
    #[error("{operator:?} is not a valid label selector operator")]
    InvalidOperator {
        /// The operator as given.
        operator: String,
    },
    /// A `metav1.LabelSelector` whose JSON does not have the documented shape.
    #[error("invalid label selector: {reason}")]
    Malformed {
        /// Which part has the wrong type.
        reason: &'static str,
    },
    /// A field selector term without `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    InvalidTerm {
        /// The whole selector.
        selector: String,
        /// The term that has no operator.
        term: String,
    },
    /// A backslash in a field selector value not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {sequence}")]
    InvalidEscape {
        /// The sequence, backslash included.
        sequence: String,
    },
    /// An unescaped `,` or `=` inside a field selector value (upstream prints the code point).
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*character))]
    UnescapedCharacter {
        /// The character.
        character: char,
    },
    /// A field the resource does not index for selection.
    #[error("field label not supported: {field}")]
    UnsupportedField {
        /// The field path as requested.
        field: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Label keys and values (apimachinery util/validation).

const QNAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QNAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, without a regex engine.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
        }
        _ => false,
    }
}

fn is_dns1123_subdomain(s: &str) -> bool {
    let label = |l: &str| {
        let b = l.as_bytes();
        let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        matches!((b.first(), b.last()), (Some(f), Some(l)) if ok(f) && ok(l))
            && b.iter().all(|c| ok(c) || *c == b'-')
    };
    s.split('.').all(label)
}

/// Upstream's `IsQualifiedName` (label and annotation keys): empty when `key` is valid.
pub fn qualified_name_errors(key: &str) -> Vec<String> {
    let examples = ["MyName", "my.name", "123-abc"];
    let mut errs = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                if prefix.len() > 253 {
                    errs.push("prefix part must be no more than 253 characters".to_owned());
                }
                if !is_dns1123_subdomain(prefix) {
                    let e = regex_error(
                        DNS1123_SUBDOMAIN_MSG,
                        DNS1123_SUBDOMAIN_FMT,
                        &["example.com"],
                    );
                    errs.push(format!("prefix part {e}"));
                }
            }
            *name
        }
        _ => {
            let e = regex_error(QNAME_MSG, QNAME_FMT, &examples);
            errs.push(format!(
                "a qualified name {e} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_owned());
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QNAME_MSG, QNAME_FMT, &examples)
        ));
    }
    errs
}

/// Upstream's `IsValidLabelValue`: empty when `value` is a valid label value.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

fn check_key(key: &str, path: &str) -> Result<(), SelectorError> {
    let errs = qualified_name_errors(key);
    if errs.is_empty() {
        return Ok(());
    }
    Err(SelectorError::Invalid {
        path: path.to_owned(),
        value: format!("{key:?}"),
        detail: errs.join("; "),
    })
}

/// Go's `%#v` of a `[]string`, as `field.Invalid` prints a bad value list.
fn go_string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_owned();
    }
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

// ---------------------------------------------------------------------------------------------
// Label selector.

/// How a label requirement relates a key to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`.
    Equals,
    /// `key==value` (same meaning as `=`; kept for display).
    DoubleEquals,
    /// `key!=value` (also true when the key is absent).
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)` (also true when the key is absent).
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>5`: the label is an integer greater than the value.
    GreaterThan,
    /// `key<5`: the label is an integer less than the value.
    LessThan,
}

/// One `key op values` term of a label selector; all terms must match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// A validated requirement, with upstream's `NewRequirement` rules and messages.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        check_key(key, "key")?;
        let invalid = |detail: &str| SelectorError::Invalid {
            path: "values".to_owned(),
            value: go_string_slice(&values),
            detail: detail.to_owned(),
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(invalid(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                return Err(invalid(
                    "exact-match compatibility requires one single value",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(invalid(
                    "values set must be empty for exists and does not exist",
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return Err(invalid(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                if let Some((i, v)) = values
                    .iter()
                    .enumerate()
                    .find(|(_, v)| v.parse::<i64>().is_err())
                {
                    return Err(SelectorError::Invalid {
                        path: format!("values[{i}]"),
                        value: format!("{v:?}"),
                        detail: "for 'Gt', 'Lt' operators, the value must be an integer".to_owned(),
                    });
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let errs = label_value_errors(v);
            if !errs.is_empty() {
                return Err(SelectorError::Invalid {
                    path: format!("values[{i}][{key}]"),
                    value: format!("{v:?}"),
                    detail: errs.join("; "),
                });
            }
        }
        Ok(Requirement {
            key: key.to_owned(),
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values (empty for Exists / DoesNotExist).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether labels read through `get` satisfy this requirement.
    fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                get(&self.key).is_some_and(has)
            }
            Operator::NotEquals | Operator::NotIn => !get(&self.key).is_some_and(has),
            Operator::Exists => get(&self.key).is_some(),
            Operator::DoesNotExist => get(&self.key).is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(label), [want]) = (get(&self.key), self.values.as_slice()) else {
                    return false;
                };
                match (label.parse::<i64>(), want.parse::<i64>()) {
                    (Ok(l), Ok(w)) if self.operator == Operator::GreaterThan => l > w,
                    (Ok(l), Ok(w)) => l < w,
                    _ => false,
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Exists => return f.write_str(&self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let mut values = self.values.clone();
        values.sort();
        let values = values.join(",");
        match self.operator {
            Operator::In | Operator::NotIn => write!(f, "{}{op}({values})", self.key),
            _ => write!(f, "{}{op}{values}", self.key),
        }
    }
}

/// A label selector: the AND of its requirements. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// Upstream's `labels.Nothing()`: what a null `metav1.LabelSelector` selects.
    nothing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// Upstream's lexer: identifiers run to whitespace or one of `=!(),<>`; symbols are greedy.
fn lex(s: &str) -> Vec<(Tok, &str)> {
    let b = s.as_bytes();
    let special = |c: u8| b"=!(),<>".contains(&c);
    // Upstream's whitespace: not form feed or vertical tab.
    let space = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        while pos < b.len() && space(b[pos]) {
            pos += 1;
        }
        // Upstream's reader returns 0 at the end, so a NUL byte also ends the input.
        if pos >= b.len() || b[pos] == 0 {
            out.push((Tok::End, ""));
            return out;
        }
        let start = pos;
        if special(b[pos]) {
            pos += 1;
            let two = b.get(pos) == Some(&b'=') && matches!(b[start], b'=' | b'!');
            if two {
                pos += 1;
            }
            let tok = match &s[start..pos] {
                ")" => Tok::ClosedPar,
                "," => Tok::Comma,
                "!" => Tok::DoesNotExist,
                "==" => Tok::DoubleEquals,
                "=" => Tok::Equals,
                ">" => Tok::GreaterThan,
                "<" => Tok::LessThan,
                "!=" => Tok::NotEquals,
                _ => Tok::OpenPar,
            };
            out.push((tok, &s[start..pos]));
        } else {
            while pos < b.len() && b[pos] != 0 && !special(b[pos]) && !space(b[pos]) {
                pos += 1;
            }
            let lit = &s[start..pos];
            let tok = match lit {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Identifier,
            };
            out.push((tok, lit));
        }
    }
}

/// Recursive-descent parser over the token list, with upstream's two contexts: in `values`
/// context the keywords `in` / `notin` are plain identifiers.
struct Parser<'a> {
    toks: Vec<(Tok, &'a str)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self, values: bool) -> (Tok, &'a str) {
        let (t, l) = self.toks.get(self.pos).copied().unwrap_or((Tok::End, ""));
        match t {
            Tok::In | Tok::NotIn if values => (Tok::Identifier, l),
            _ => (t, l),
        }
    }

    fn next(&mut self, values: bool) -> (Tok, &'a str) {
        let t = self.peek(values);
        self.pos += 1;
        t
    }

    fn unexpected(found: &str, expected: &'static str) -> SelectorError {
        SelectorError::UnexpectedToken {
            found: found.to_owned(),
            expected,
        }
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut out = Vec::new();
        loop {
            match self.peek(true) {
                (Tok::Identifier | Tok::DoesNotExist, _) => {
                    let r = self
                        .requirement()
                        .map_err(|e| SelectorError::Requirement(Box::new(e)))?;
                    out.push(r);
                    match self.next(true) {
                        (Tok::End, _) => return Ok(out),
                        (Tok::Comma, _) => {
                            let (t, l) = self.peek(true);
                            if t != Tok::Identifier && t != Tok::DoesNotExist {
                                return Err(Self::unexpected(l, "identifier after ','"));
                            }
                        }
                        (_, l) => return Err(Self::unexpected(l, "',' or 'end of string'")),
                    }
                }
                (Tok::End, _) => return Ok(out),
                (_, l) => return Err(Self::unexpected(l, "!, identifier, or 'end of string'")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (mut tok, mut key) = self.next(true);
        let negated = tok == Tok::DoesNotExist;
        if negated {
            (tok, key) = self.next(true);
        }
        if tok != Tok::Identifier {
            return Err(Self::unexpected(key, "identifier"));
        }
        check_key(key, "<nil>")?;
        let at_end = matches!(self.peek(true).0, Tok::End | Tok::Comma);
        if negated {
            return Requirement::new(key, Operator::DoesNotExist, Vec::new());
        }
        if at_end {
            return Requirement::new(key, Operator::Exists, Vec::new());
        }
        let op = match self.next(false) {
            (Tok::In, _) => Operator::In,
            (Tok::NotIn, _) => Operator::NotIn,
            (Tok::Equals, _) => Operator::Equals,
            (Tok::DoubleEquals, _) => Operator::DoubleEquals,
            (Tok::NotEquals, _) => Operator::NotEquals,
            (Tok::GreaterThan, _) => Operator::GreaterThan,
            (Tok::LessThan, _) => Operator::LessThan,
            (_, l) => return Err(Self::unexpected(l, "in, notin, =, ==, !=, gt, lt")),
        };
        let values = match op {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        Requirement::new(key, op, values.into_iter().collect())
    }

    fn set_values(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let (t, l) = self.next(true);
        if t != Tok::OpenPar {
            return Err(Self::unexpected(l, "'('"));
        }
        let mut set = BTreeSet::new();
        match self.peek(true) {
            (Tok::ClosedPar, _) => {
                self.next(true);
                set.insert(String::new());
                return Ok(set);
            }
            (Tok::Identifier | Tok::Comma, l) => {
                loop {
                    match self.next(true) {
                        (Tok::Identifier, v) => {
                            set.insert(v.to_owned());
                            match self.peek(true) {
                                (Tok::Comma, _) => {}
                                (Tok::ClosedPar, _) => break,
                                (_, l2) => return Err(Self::unexpected(l2, "',' or ')'")),
                            }
                        }
                        // "(,x", "x,,y" and "x,)" all contribute the empty value.
                        (Tok::Comma, _) => {
                            if set.is_empty() {
                                set.insert(String::new());
                            }
                            match self.peek(true).0 {
                                Tok::ClosedPar => {
                                    set.insert(String::new());
                                    break;
                                }
                                Tok::Comma => {
                                    set.insert(String::new());
                                }
                                _ => {}
                            }
                        }
                        (_, v) => return Err(Self::unexpected(v, "',', or identifier")),
                    }
                }
                if self.next(true).0 != Tok::ClosedPar {
                    return Err(Self::unexpected(l, "')'"));
                }
            }
            (_, l) => return Err(Self::unexpected(l, "',', ')' or identifier")),
        }
        Ok(set)
    }

    fn exact_value(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        if matches!(self.peek(true).0, Tok::End | Tok::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        match self.next(true) {
            (Tok::Identifier, v) => Ok(BTreeSet::from([v.to_owned()])),
            (_, l) => Err(Self::unexpected(l, "identifier")),
        }
    }
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// The selector that matches no object (a null `metav1.LabelSelector`).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parse the `?labelSelector=` syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
    /// `a`, `!a`, `a>1`, `a<1`, joined by commas (AND).
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut p = Parser {
            toks: lex(s),
            pos: 0,
        };
        let mut requirements = p.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// From a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`); as upstream's
    /// `LabelSelectorAsSelector`, null selects nothing and `{}` selects everything.
    pub fn from_json(selector: &Value) -> Result<Self, SelectorError> {
        let obj = match selector {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(o) => o,
            _ => {
                return Err(SelectorError::Malformed {
                    reason: "selector is not an object",
                });
            }
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let v = v.as_str().ok_or(SelectorError::Malformed {
                        reason: "matchLabels values must be strings",
                    })?;
                    requirements.push(Requirement::new(k, Operator::Equals, vec![v.to_owned()])?);
                }
            }
            Some(_) => {
                return Err(SelectorError::Malformed {
                    reason: "matchLabels is not an object",
                });
            }
        }
        let exprs = match obj.get("matchExpressions") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => {
                return Err(SelectorError::Malformed {
                    reason: "matchExpressions is not an array",
                });
            }
        };
        for e in exprs {
            let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
            let op = match text("operator") {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::InvalidOperator {
                        operator: other.to_owned(),
                    });
                }
            };
            let values = match e.get("values") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(vs)) => vs
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(SelectorError::Malformed {
                        reason: "matchExpressions values must be strings",
                    })?,
                Some(_) => {
                    return Err(SelectorError::Malformed {
                        reason: "matchExpressions values is not an array",
                    });
                }
            };
            requirements.push(Requirement::new(text("key"), op, values)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// From a plain `key: value` map, as Services and ReplicationControllers carry
    /// (`spec.selector`); upstream takes these as already validated, and so does this.
    pub fn from_set(set: &Map<String, Value>) -> Self {
        let requirements = set
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.as_str().unwrap_or_default().to_owned()],
            })
            .collect::<Vec<_>>();
        // Sorted explicitly: a JSON map keeps insertion order when serde_json's
        // `preserve_order` is on anywhere in the build.
        let mut requirements = requirements;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// True when the selector does not restrict anything (upstream's `Empty()`).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && !self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` (an object's `metadata.labels`) satisfy every requirement.
    /// Non-string label values count as absent.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        !self.nothing
            && self
                .requirements
                .iter()
                .all(|r| r.matches_with(|k| labels.get(k).and_then(Value::as_str)))
    }

    /// Whether the object's `metadata.labels` satisfy the selector.
    pub fn matches_object(&self, obj: &Value) -> bool {
        match obj.pointer("/metadata/labels").and_then(Value::as_object) {
            Some(labels) => self.matches(labels),
            None => self.matches(&Map::new()),
        }
    }

    /// The single value the selector requires for `key` (`key=v`, `key==v`, `key in (v)`).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Field selector.

/// How a field selector term compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `f=v` or `f==v`.
    Equals,
    /// `f!=v`.
    NotEquals,
}

/// One `field op value` term; the value is unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    /// The dotted field path, e.g. `spec.nodeName`.
    pub field: String,
    /// The comparison.
    pub operator: FieldOperator,
    /// The literal value to compare with.
    pub value: String,
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        let escaped = self
            .value
            .replace('\\', "\\\\")
            .replace(',', "\\,")
            .replace('=', "\\=");
        write!(f, "{}{op}{escaped}", self.field)
    }
}

/// A field selector: the AND of its terms. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// Splits on commas not escaped by a backslash (the backslash stays for unescaping).
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

fn unescape(v: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => {
                    return Err(SelectorError::InvalidEscape {
                        sequence: format!("\\{e}"),
                    });
                }
                None => {
                    return Err(SelectorError::InvalidEscape {
                        sequence: "\\".to_owned(),
                    });
                }
            },
            ',' | '=' => return Err(SelectorError::UnescapedCharacter { character: c }),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// Fields each resource lets clients select on beyond `metadata.name` / `metadata.namespace`
/// (upstream's field label conversion functions).
fn resource_fields(resource: &str) -> &'static [&'static str] {
    match resource {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
            "spec.host",
        ],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "secrets" => &["type"],
        "nodes" => &["spec.unschedulable"],
        "replicasets" | "replicationcontrollers" => &["status.replicas"],
        "jobs" => &["status.successful"],
        "namespaces" => &["status.phase", "name"],
        _ => &[],
    }
}

/// The string a field selector compares for `field` on `obj`: the value at the dotted path
/// (strings as is, numbers and booleans printed, anything else or missing as `""`), with
/// upstream's per-kind aliases and defaults (pod `spec.hostNetwork` defaults to `false`, job
/// `status.successful` reads `status.succeeded`, event `source` falls back to
/// `reportingComponent`, ...).
pub fn field_value(obj: &Value, field: &str) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let generic = |path: &str| {
        let v = path.split('.').try_fold(obj, |v, k| v.get(k));
        match v {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    };
    let or = |path: &str, default: &str| {
        let v = generic(path);
        if v.is_empty() { default.to_owned() } else { v }
    };
    match (kind, field) {
        ("Pod", "spec.host") => generic("spec.nodeName"),
        ("Pod", "spec.hostNetwork") => or("spec.hostNetwork", "false"),
        ("Pod", "status.podIP") => {
            let first = obj.pointer("/status/podIPs/0/ip").and_then(Value::as_str);
            first
                .map(str::to_owned)
                .unwrap_or_else(|| generic("status.podIP"))
        }
        ("Node", "spec.unschedulable") => or("spec.unschedulable", "false"),
        ("ReplicaSet" | "ReplicationController", "status.replicas") => or("status.replicas", "0"),
        ("Job", "status.successful") => or("status.succeeded", "0"),
        ("Namespace", "name") => generic("metadata.name"),
        ("Event", "source") => or("source.component", &generic("reportingComponent")),
        _ => generic(field),
    }
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parse the `?fieldSelector=` syntax: `f=v`, `f==v`, `f!=v` joined by commas (AND);
    /// `\`, `,` and `=` in values are escaped with a backslash.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        if s.is_empty() {
            return Ok(FieldSelector { requirements });
        }
        for term in split_terms(s).into_iter().filter(|t| !t.is_empty()) {
            // The first operator occurrence splits; `!=` and `==` are tried before `=`.
            let split = term.char_indices().find_map(|(i, _)| {
                let rest = &term[i..];
                [
                    ("!=", FieldOperator::NotEquals),
                    ("==", FieldOperator::Equals),
                    ("=", FieldOperator::Equals),
                ]
                .into_iter()
                .find(|(op, _)| rest.starts_with(op))
                .map(|(op, kind)| (&term[..i], kind, &rest[op.len()..]))
            });
            let Some((field, operator, raw)) = split else {
                return Err(SelectorError::InvalidTerm {
                    selector: s.to_owned(),
                    term: term.to_owned(),
                });
            };
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                operator,
                value: unescape(raw)?,
            });
        }
        requirements.sort_by_cached_key(ToString::to_string);
        Ok(FieldSelector { requirements })
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms, sorted by their text.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether every term holds on `obj` (see [`field_value`]).
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let equal = field_value(obj, &r.field) == r.value;
            equal == (r.operator == FieldOperator::Equals)
        })
    }

    /// Check every field against what upstream lets clients select on for `resource` (plural,
    /// e.g. `pods`): `metadata.name` everywhere, `metadata.namespace` except on nodes and
    /// namespaces, and the per-resource fields.
    pub fn validate_for(&self, resource: &str) -> Result<(), SelectorError> {
        let allowed = |f: &str| {
            f == "metadata.name"
                || (f == "metadata.namespace" && !matches!(resource, "nodes" | "namespaces"))
                || resource_fields(resource).contains(&f)
        };
        match self.requirements.iter().find(|r| !allowed(&r.field)) {
            Some(r) => Err(SelectorError::UnsupportedField {
                field: r.field.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The value the selector requires `field` to equal, if it has such a term.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).expect("parses")
    }

    fn err(s: &str) -> String {
        LabelSelector::parse(s).expect_err("rejected").to_string()
    }

    #[test]
    fn equality_operators() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        assert!(sel("app=web").matches(&l));
        assert!(sel("app==web").matches(&l));
        assert!(!sel("app=db").matches(&l));
        assert!(sel("app!=db").matches(&l));
        assert!(!sel("app!=web").matches(&l));
        assert!(
            sel("missing!=x").matches(&l),
            "!= holds when the key is absent"
        );
        assert!(!sel("missing=").matches(&l));
        assert!(sel("app=web,tier=front").matches(&l));
        assert!(!sel("app=web,tier=back").matches(&l));
    }

    #[test]
    fn set_operators() {
        let l = labels(json!({"env": "prod"}));
        assert!(sel("env in (prod,staging)").matches(&l));
        assert!(!sel("env in (dev)").matches(&l));
        assert!(sel("env notin (dev,qa)").matches(&l));
        assert!(!sel("env notin (prod)").matches(&l));
        assert!(sel("other notin (x)").matches(&l));
        assert!(!sel("other in (x)").matches(&l));
    }

    #[test]
    fn existence_operators() {
        let l = labels(json!({"env": "prod"}));
        assert!(sel("env").matches(&l));
        assert!(!sel("!env").matches(&l));
        assert!(sel("!gpu").matches(&l));
        assert!(!sel("gpu").matches(&l));
        assert!(sel("env,!gpu").matches(&l));
    }

    #[test]
    fn numeric_operators() {
        let l = labels(json!({"n": "5", "s": "x"}));
        assert!(sel("n>4").matches(&l));
        assert!(!sel("n>5").matches(&l));
        assert!(sel("n<6").matches(&l));
        assert!(!sel("s<6").matches(&l), "non-integer labels never match");
        assert!(!sel("absent>1").matches(&l));
        assert!(err("n>x").contains("for 'Gt', 'Lt' operators, the value must be an integer"));
    }

    #[test]
    fn whitespace_and_keywords_as_values() {
        let s = sel("  app =  web ,  env  in ( in , notin ) , ! gpu ");
        assert_eq!(s.to_string(), "app=web,env in (in,notin),!gpu");
        assert_eq!(
            sel("x in (foo,,baz),y,z notin ()").to_string(),
            "x in (,baz,foo),y,z notin ()"
        );
    }

    #[test]
    fn display_sorts_by_key_and_values() {
        assert_eq!(sel("b=1,a in (z,y,y)").to_string(), "a in (y,z),b=1");
        assert_eq!(sel("").to_string(), "");
        assert!(sel("").is_empty());
        assert!(sel("").matches(&Map::new()));
    }

    #[test]
    fn syntax_errors_name_the_bad_part() {
        assert_eq!(err("a=b,"), "found '', expected: identifier after ','");
        assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(
            err("=b"),
            "found '=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            err("a in x"),
            "unable to parse requirement: found 'x', expected: '('"
        );
        assert_eq!(
            err("a in (x"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(
            err("a=(x)"),
            "unable to parse requirement: found '(', expected: identifier"
        );
        assert_eq!(
            err("! =a"),
            "unable to parse requirement: found '=', expected: identifier"
        );
        assert_eq!(
            err("!=a"),
            "found '!=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(err("!a=b"), "found '=', expected: ',' or 'end of string'");
    }

    #[test]
    fn invalid_keys_and_values() {
        let e = err("a/b/c=d");
        assert!(e.starts_with("unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of"), "{e}");
        let e = err("Bad_Prefix/x=y");
        assert!(
            e.contains("prefix part a lowercase RFC 1123 subdomain"),
            "{e}"
        );
        let long = "k".repeat(64);
        assert!(err(&long).contains("name part must be no more than 63 characters"));
        assert!(LabelSelector::parse(&format!("{}/k", "p".repeat(253))).is_ok());
        let e = err("app=-bad");
        assert!(e.starts_with("unable to parse requirement: values[0][app]: Invalid value: \"-bad\": a valid label must be"), "{e}");
        assert!(
            err(&format!("app={}", "v".repeat(64))).contains("must be no more than 63 characters")
        );
    }

    #[test]
    fn from_json_label_selector() {
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "env", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["x"]}
            ]
        }))
        .expect("valid");
        assert_eq!(
            s.to_string(),
            "app=web,!canary,env,tier in (a,b),zone notin (x)"
        );
        assert!(s.matches(&labels(json!({"app": "web", "tier": "a", "env": ""}))));
        assert!(!s.matches(&labels(json!({"app": "web", "tier": "a"}))));
        assert!(
            LabelSelector::from_json(&json!({}))
                .expect("empty")
                .is_empty()
        );
        let none = LabelSelector::from_json(&Value::Null).expect("null");
        assert!(!none.is_empty() && !none.matches(&Map::new()));
        let bad = LabelSelector::from_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "Gt"}]}),
        );
        assert_eq!(
            bad.expect_err("op").to_string(),
            "\"Gt\" is not a valid label selector operator"
        );
        let empty_in = LabelSelector::from_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
        );
        assert_eq!(
            empty_in.expect_err("values").to_string(),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        let bad_key = LabelSelector::from_json(&json!({"matchLabels": {"a/b/c": "x"}}));
        assert!(
            bad_key
                .expect_err("key")
                .to_string()
                .starts_with("key: Invalid value: \"a/b/c\"")
        );
    }

    #[test]
    fn from_set_and_object_matching() {
        let s = LabelSelector::from_set(&labels(json!({"app": "web"})));
        assert_eq!(s.to_string(), "app=web");
        assert!(s.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!s.matches_object(&json!({"metadata": {}})));
        assert_eq!(s.requires_exact_match("app"), Some("web"));
        assert_eq!(sel("app in (a,b)").requires_exact_match("app"), None);
    }

    fn pod() -> Value {
        json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "p1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.5"}]}
        })
    }

    #[test]
    fn field_selector_operators() {
        let p = pod();
        let fs = |s: &str| FieldSelector::parse(s).expect("parses");
        assert!(fs("metadata.name=p1").matches(&p));
        assert!(fs("metadata.name==p1").matches(&p));
        assert!(!fs("metadata.name!=p1").matches(&p));
        assert!(fs("spec.nodeName=n1,status.phase!=Pending").matches(&p));
        assert!(fs("status.podIP=10.42.0.5").matches(&p));
        assert!(
            fs("spec.hostNetwork=false").matches(&p),
            "defaulted like upstream"
        );
        assert!(fs("spec.host=n1").matches(&p));
        assert!(
            fs("spec.schedulerName=").matches(&p),
            "missing reads as empty"
        );
        assert!(fs("").is_empty() && fs("").matches(&p));
        assert_eq!(fs("b=2,a==1").to_string(), "a=1,b=2");
        assert_eq!(
            fs("metadata.name=p1").requires_exact_match("metadata.name"),
            Some("p1")
        );
    }

    #[test]
    fn field_selector_kind_specific_fields() {
        let ev = json!({"kind": "Event", "apiVersion": "v1", "involvedObject": {"kind": "Pod", "name": "p1", "uid": "u1"},
                        "reportingComponent": "kubelet", "type": "Warning", "reason": "BackOff"});
        let fs = |s: &str| FieldSelector::parse(s).expect("parses");
        assert!(fs("involvedObject.name=p1,involvedObject.uid=u1,type=Warning").matches(&ev));
        assert!(fs("source=kubelet").matches(&ev));
        let job = json!({"kind": "Job", "status": {"succeeded": 2}});
        assert!(fs("status.successful=2").matches(&job));
        let node = json!({"kind": "Node", "metadata": {"name": "n1"}});
        assert!(fs("spec.unschedulable=false").matches(&node));
        let ns = json!({"kind": "Namespace", "metadata": {"name": "kube-system"}, "status": {"phase": "Active"}});
        assert!(fs("name=kube-system,status.phase=Active").matches(&ns));
    }

    #[test]
    fn field_selector_escapes() {
        let fs = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").expect("parses");
        assert_eq!(fs.requirements()[0].value, r"a,b=c\d");
        assert_eq!(fs.to_string(), r"metadata.name=a\,b\=c\\d");
        let e = |s: &str| FieldSelector::parse(s).expect_err("rejected").to_string();
        assert_eq!(
            e("metadata.name"),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        assert_eq!(
            e(r"a=b\x"),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            e(r"a=b\"),
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            e("a=b=c"),
            "invalid field selector: unescaped character in value: 61"
        );
    }

    #[test]
    fn field_selector_validation() {
        let fs = |s: &str| FieldSelector::parse(s).expect("parses");
        assert!(
            fs("metadata.name=a,metadata.namespace=b")
                .validate_for("configmaps")
                .is_ok()
        );
        assert!(
            fs("spec.nodeName=n1,status.phase=Running")
                .validate_for("pods")
                .is_ok()
        );
        assert!(
            fs("involvedObject.uid=u,involvedObject.name=n,involvedObject.namespace=d")
                .validate_for("events")
                .is_ok()
        );
        assert!(fs("type=kubernetes.io/tls").validate_for("secrets").is_ok());
        assert!(fs("spec.unschedulable=true").validate_for("nodes").is_ok());
        assert!(fs("status.replicas=0").validate_for("replicasets").is_ok());
        assert!(fs("status.successful=1").validate_for("jobs").is_ok());
        assert!(fs("status.phase=Active").validate_for("namespaces").is_ok());
        let e = fs("spec.nodeName=n1")
            .validate_for("services")
            .expect_err("unsupported");
        assert_eq!(e.to_string(), "field label not supported: spec.nodeName");
        let e = fs("metadata.namespace=x")
            .validate_for("nodes")
            .expect_err("unsupported");
        assert_eq!(
            e.to_string(),
            "field label not supported: metadata.namespace"
        );
        assert!(fs("spec.foo=1").validate_for("pods").is_err());
    }

    // ---- properties ----

    fn name_part() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?"
    }

    fn key() -> impl Strategy<Value = String> {
        (
            proptest::option::of("[a-z0-9]([-a-z0-9]{0,4}[a-z0-9])?(\\.[a-z0-9]{1,4}){0,2}"),
            name_part(),
        )
            .prop_map(|(p, n)| p.map_or(n.clone(), |p| format!("{p}/{n}")))
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), name_part()]
    }

    fn requirement() -> impl Strategy<Value = String> {
        (
            key(),
            0..9usize,
            proptest::collection::vec(value(), 1..4),
            0..1000i64,
        )
            .prop_map(|(k, op, vs, n)| match op {
                0 => format!("{k}={}", vs[0]),
                1 => format!("{k}=={}", vs[0]),
                2 => format!("{k}!={}", vs[0]),
                3 => format!("{k} in ({})", vs.join(",")),
                4 => format!("{k} notin ({})", vs.join(",")),
                5 => k,
                6 => format!("!{k}"),
                7 => format!("{k}>{n}"),
                _ => format!("{k} < {n}"),
            })
    }

    fn label_map() -> impl Strategy<Value = Map<String, Value>> {
        proptest::collection::btree_map(
            prop_oneof![Just("a".to_owned()), Just("b".to_owned()), key()],
            value(),
            0..4,
        )
        .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
    }

    proptest! {
        #[test]
        fn label_selector_round_trips(reqs in proptest::collection::vec(requirement(), 0..5)) {
            let text = reqs.join(",");
            let parsed = LabelSelector::parse(&text).expect("generated selectors are valid");
            let shown = parsed.to_string();
            let reparsed = LabelSelector::parse(&shown).expect("display parses");
            prop_assert_eq!(&reparsed, &parsed);
            prop_assert_eq!(reparsed.to_string(), shown);
        }

        #[test]
        fn label_negations_are_complements(k in prop_oneof![Just("a".to_owned()), key()],
                                           vs in proptest::collection::vec(value(), 1..3),
                                           l in label_map()) {
            let pairs = [
                (format!("{k}={}", vs[0]), format!("{k}!={}", vs[0])),
                (format!("{k} in ({})", vs.join(",")), format!("{k} notin ({})", vs.join(","))),
                (k.clone(), format!("!{k}")),
            ];
            for (pos, neg) in pairs {
                prop_assert_ne!(sel(&pos).matches(&l), sel(&neg).matches(&l));
            }
            let eq = sel(&format!("{k}={}", vs[0])).matches(&l);
            prop_assert_eq!(eq, l.get(&k).and_then(Value::as_str) == Some(vs[0].as_str()));
        }

        #[test]
        fn label_selector_from_set_matches_its_set(l in label_map(), extra in label_map()) {
            let s = LabelSelector::from_set(&l);
            let mut superset = extra;
            superset.extend(l.clone());
            prop_assert!(s.matches(&l));
            prop_assert!(s.matches(&superset));
            prop_assert!(LabelSelector::parse(&s.to_string()).expect("valid").matches(&l));
        }

        #[test]
        fn conjunction_is_and(a in requirement(), b in requirement(), l in label_map()) {
            let both = sel(&format!("{a},{b}")).matches(&l);
            prop_assert_eq!(both, sel(&a).matches(&l) && sel(&b).matches(&l));
        }

        #[test]
        fn field_selector_round_trips(terms in proptest::collection::vec(
            ("[a-z]{1,6}(\\.[a-zA-Z]{1,6}){0,2}", any::<bool>(), "[ -~]{0,8}"), 0..4)) {
            let reqs: Vec<FieldRequirement> = terms.iter().map(|(f, eq, v)| FieldRequirement {
                field: f.clone(),
                operator: if *eq { FieldOperator::Equals } else { FieldOperator::NotEquals },
                value: v.clone(),
            }).collect();
            let text = reqs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
            let parsed = FieldSelector::parse(&text).expect("escaped terms parse");
            let mut want = reqs.clone();
            want.sort_by_cached_key(ToString::to_string);
            prop_assert_eq!(parsed.requirements(), want.as_slice());
            prop_assert_eq!(FieldSelector::parse(&parsed.to_string()).expect("reparse"), parsed);
        }

        #[test]
        fn field_equality_and_inequality_are_complements(name in "[a-z0-9]{0,5}", want in "[a-z0-9]{0,5}") {
            let obj = json!({"metadata": {"name": name}});
            let eq = FieldSelector::parse(&format!("metadata.name={want}")).expect("eq").matches(&obj);
            let ne = FieldSelector::parse(&format!("metadata.name!={want}")).expect("ne").matches(&obj);
            prop_assert_eq!(eq, name == want);
            prop_assert_ne!(eq, ne);
        }
    }
}
