//! BIRD's control-socket protocol (what `birdc` speaks): replies and `show protocols`.
//!
//! A reply is a run of lines, each `CODE-text` (more follows), `CODE text` (the last line) or
//! ` text` (continues the previous code). Codes below 8000 are answers (0000 OK, 0009
//! disabled, 0011 enabled, 1002 a protocol row, 2002 the table header); 8xxx and 9xxx are
//! errors (9001 a syntax error, 8003 no such protocol).

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The code of the last line.
    pub code: u16,
    /// Every line with its code (continuation lines take the code before them).
    pub lines: Vec<(u16, String)>,
}

impl Reply {
    pub fn is_error(&self) -> bool {
        self.code >= 8000 || self.lines.iter().any(|(c, _)| *c >= 8000)
    }

    /// The text of the lines, one per line.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads one reply from the front of `buf`: the reply and how many bytes it took, or `None`
/// when it is not complete yet. A line that is not of the protocol's shape is an error.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let mut lines = Vec::new();
    let mut pos = 0;
    let mut last_code = 0u16;
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        let raw = &buf[pos..pos + nl];
        pos += nl + 1;
        let line = String::from_utf8_lossy(raw).into_owned();
        if let Some(rest) = line.strip_prefix(' ') {
            lines.push((last_code, rest.to_string()));
            continue;
        }
        let (code, sep, text) = match (line.get(..4), line.as_bytes().get(4), line.get(5..)) {
            (Some(c), Some(&s), text) if c.bytes().all(|b| b.is_ascii_digit()) => {
                (c.parse::<u16>().unwrap_or(0), s, text.unwrap_or(""))
            }
            (Some(c), None, _) if c.len() == 4 && c.bytes().all(|b| b.is_ascii_digit()) => {
                (c.parse::<u16>().unwrap_or(0), b' ', "")
            }
            _ => return Err(format!("not a BIRD reply line: {line:?}")),
        };
        last_code = code;
        lines.push((code, text.to_string()));
        match sep {
            b' ' => return Ok(Some((Reply { code, lines }, pos))),
            b'-' => {}
            other => {
                return Err(format!(
                    "not a BIRD reply line (separator {other:?}): {line:?}"
                ))
            }
        }
    }
    Ok(None)
}

/// One row of `show protocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolRow {
    pub name: String,
    /// `BGP`, `Static`, `BFD`, `Device`.
    pub proto: String,
    /// BIRD's state: `up`, `down`, `start`, `stop`.
    pub state: String,
    /// When the state was entered, as BIRD prints it.
    pub since: String,
    /// For BGP the session state (`Established`, `Active`, `Connect`, …) and the last error.
    pub info: String,
}

/// The rows of a `show protocols` reply (the 1002 lines and their continuations).
pub fn parse_protocols(reply: &Reply) -> Vec<ProtocolRow> {
    reply
        .lines
        .iter()
        .filter(|(c, _)| *c == 1002)
        .filter_map(|(_, t)| {
            let mut words = t.split_whitespace();
            let name = words.next()?.to_string();
            let proto = words.next()?.to_string();
            let _table = words.next()?;
            let state = words.next()?.to_string();
            let since = words.next().unwrap_or("").to_string();
            let info = words.collect::<Vec<_>>().join(" ");
            Some(ProtocolRow {
                name,
                proto,
                state,
                since,
                info,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // As BIRD 2.0.12 answered `show protocols` here.
    const SHOW: &str = "2002-Name       Proto      Table      State  Since         Info\n1002-device1    Device     ---        up     20:42:20.923  \n halb_r0    Static     master4    down   20:42:20.923  \n halb_n0    BGP        ---        start  20:42:21.000  Active        Socket: Connection refused\n0000 \n";

    #[test]
    fn replies_and_protocol_rows() {
        let (r, used) = parse_reply(SHOW.as_bytes()).unwrap().unwrap();
        assert_eq!(used, SHOW.len());
        assert_eq!(r.code, 0);
        assert!(!r.is_error());
        let rows = parse_protocols(&r);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].name, "halb_r0");
        assert_eq!(rows[1].state, "down");
        assert_eq!(rows[2].proto, "BGP");
        assert_eq!(rows[2].info, "Active Socket: Connection refused");
    }

    #[test]
    fn partial_and_errors() {
        assert_eq!(parse_reply(b"0011-halb_r0: enabled\n").unwrap(), None);
        let (r, _) = parse_reply(b"0001 BIRD 2.0.12 ready.\n").unwrap().unwrap();
        assert_eq!(r.code, 1);
        let (r, _) = parse_reply(b"9001 syntax error, unexpected CF_SYM_UNDEFINED\n")
            .unwrap()
            .unwrap();
        assert!(r.is_error());
        assert!(parse_reply(b"garbage\n").is_err());
    }
}
