//! CRI container log files and the `containerLogs` query: parsing `<RFC3339Nano> <stream> <P|F>
//! <text>` records, joining partial lines, and applying `tailLines`, `sinceSeconds`/`sinceTime`,
//! `timestamps` and `limitBytes`.

/// Errors of a log query.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogQueryError {
    /// A parameter has a value that does not parse.
    #[error("invalid value {value:?} for {name}")]
    Invalid {
        /// The parameter.
        name: String,
        /// Its value.
        value: String,
    },
}

/// The options of a `containerLogs` request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<jiff::Timestamp>,
    pub limit_bytes: Option<usize>,
}

/// Decodes `application/x-www-form-urlencoded` pairs.
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A boolean query value as Go's `strconv.ParseBool` reads it.
pub(crate) fn parse_bool(name: &str, v: &str) -> Result<bool, LogQueryError> {
    match v {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(LogQueryError::Invalid {
            name: name.into(),
            value: v.into(),
        }),
    }
}

impl LogOptions {
    /// Parses the query string of a `containerLogs` request.
    pub fn from_query(query: &str, now: jiff::Timestamp) -> Result<Self, LogQueryError> {
        let mut o = Self::default();
        let invalid = |name: &str, value: &str| LogQueryError::Invalid {
            name: name.into(),
            value: value.into(),
        };
        for (k, v) in query_pairs(query) {
            match k.as_str() {
                "follow" => o.follow = parse_bool(&k, &v)?,
                "previous" => o.previous = parse_bool(&k, &v)?,
                "timestamps" => o.timestamps = parse_bool(&k, &v)?,
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| invalid(&k, &v))?;
                    o.tail_lines = Some(n.max(0) as usize);
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| invalid(&k, &v))?;
                    if n <= 0 {
                        return Err(invalid(&k, &v));
                    }
                    o.limit_bytes = Some(n as usize);
                }
                "sinceSeconds" => {
                    let n: i64 = v.parse().map_err(|_| invalid(&k, &v))?;
                    if n <= 0 {
                        return Err(invalid(&k, &v));
                    }
                    o.since = Some(now - jiff::SignedDuration::from_secs(n));
                }
                "sinceTime" => {
                    o.since = Some(v.parse().map_err(|_| invalid(&k, &v))?);
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub time: &'a str,
    pub partial: bool,
    pub text: &'a [u8],
}

/// Parses one line (without its newline) of a CRI log file.
pub(crate) fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default();
    Some(Record {
        time,
        partial: tag.first() == Some(&b'P'),
        text,
    })
}

/// Turns CRI records into the text `kubectl logs` shows; whole lines only, partials joined.
#[derive(Debug, Default)]
pub(crate) struct Formatter {
    pub timestamps: bool,
    pub since: Option<jiff::Timestamp>,
    /// The partial line being assembled, with its first record's time.
    pending: Option<(String, Vec<u8>)>,
}

impl Formatter {
    pub fn new(o: &LogOptions) -> Self {
        Self {
            timestamps: o.timestamps,
            since: o.since,
            pending: None,
        }
    }

    /// Feeds one record; returns a complete output line when one ends.
    pub fn push(&mut self, r: &Record<'_>) -> Option<Vec<u8>> {
        let (time, mut text) = self
            .pending
            .take()
            .unwrap_or_else(|| (r.time.to_owned(), Vec::new()));
        text.extend_from_slice(r.text);
        if r.partial {
            self.pending = Some((time, text));
            return None;
        }
        if let Some(since) = self.since
            && time.parse::<jiff::Timestamp>().is_ok_and(|t| t < since)
        {
            return None;
        }
        let mut out = Vec::with_capacity(text.len() + 40);
        if self.timestamps {
            out.extend_from_slice(time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&text);
        out.push(b'\n');
        Some(out)
    }
}

/// The output lines of a whole log file's contents (complete records only), and how many bytes
/// of `data` were consumed.
pub(crate) fn format_all(data: &[u8], f: &mut Formatter) -> (Vec<Vec<u8>>, usize) {
    let mut lines = Vec::new();
    let mut consumed = 0;
    while let Some(nl) = data[consumed..].iter().position(|b| *b == b'\n') {
        let line = &data[consumed..consumed + nl];
        consumed += nl + 1;
        if let Some(r) = parse_record(line)
            && let Some(out) = f.push(&r)
        {
            lines.push(out);
        }
    }
    (lines, consumed)
}

/// Applies `tailLines` to complete output lines.
pub(crate) fn tail(lines: Vec<Vec<u8>>, n: Option<usize>) -> Vec<Vec<u8>> {
    match n {
        Some(n) if n < lines.len() => lines[lines.len() - n..].to_vec(),
        _ => lines,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LOG: &[u8] = b"2026-01-01T00:00:00.000000001Z stdout F line-0\n\
2026-01-01T00:00:01.5Z stdout P par\n\
2026-01-01T00:00:01.6Z stdout F tial\n\
2026-01-01T00:00:02Z stderr F line-2\n\
2026-01-01T00:00:03Z stdout F incompl";

    #[test]
    fn records_and_partials() {
        let mut f = Formatter::default();
        let (lines, used) = format_all(LOG, &mut f);
        assert_eq!(
            lines,
            [
                b"line-0\n".to_vec(),
                b"partial\n".to_vec(),
                b"line-2\n".to_vec()
            ]
        );
        assert_eq!(&LOG[used..], b"2026-01-01T00:00:03Z stdout F incompl");
    }

    #[test]
    fn tail_timestamps_and_since() {
        let now: jiff::Timestamp = "2026-01-01T00:00:03Z".parse().unwrap();
        let o = LogOptions::from_query("tailLines=1&timestamps=true", now).unwrap();
        let mut f = Formatter::new(&o);
        let (lines, _) = format_all(LOG, &mut f);
        assert_eq!(
            tail(lines, o.tail_lines),
            [b"2026-01-01T00:00:02Z line-2\n".to_vec()]
        );
        let o = LogOptions::from_query("sinceSeconds=2", now).unwrap();
        let (lines, _) = format_all(LOG, &mut Formatter::new(&o));
        assert_eq!(lines, [b"partial\n".to_vec(), b"line-2\n".to_vec()]);
    }

    #[test]
    fn query_parsing() {
        let now = jiff::Timestamp::now();
        let o = LogOptions::from_query(
            "follow=true&previous=1&limitBytes=10&sinceTime=2026-01-01T00%3A00%3A00Z",
            now,
        )
        .unwrap();
        assert!(o.follow && o.previous);
        assert_eq!(o.limit_bytes, Some(10));
        assert_eq!(o.since.unwrap().to_string(), "2026-01-01T00:00:00Z");
        assert!(LogOptions::from_query("tailLines=x", now).is_err());
        assert_eq!(
            query_pairs("command=echo&command=a+b%21"),
            [
                ("command".into(), "echo".into()),
                ("command".into(), "a b!".into())
            ]
        );
    }
}
