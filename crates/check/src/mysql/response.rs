//! The server's answer to a COM_QUERY in the text protocol: an OK, an ERR, or result sets
//! (column count, column definitions, EOF, rows, EOF), possibly several in a row (a stored
//! procedure's). The checker asks for no CLIENT_DEPRECATE_EOF, so every server ends both parts
//! of a result set with an EOF packet.

use super::packet::{
    eof_status, is_eof, Cursor, Malformed, OkPacket, ServerError, ERR, OK,
    SERVER_MORE_RESULTS_EXISTS,
};

/// More columns than this is not a health-check answer but a garbled count.
const MAX_COLUMNS: u64 = 4096;

/// Where a response is, after one more packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The response goes on.
    More,
    /// The response is complete and the command succeeded.
    Done,
    /// The server answered with an ERR (before or in the middle of the rows).
    Failed(ServerError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting OK, ERR or a column count.
    Start,
    /// Expecting this many more column definitions.
    Columns(u64),
    /// Expecting the EOF after the column definitions.
    ColumnsEnd,
    /// Expecting rows or the EOF after them.
    Rows,
    Finished,
}

/// Reads one command's response, keeping the first column of the first row.
#[derive(Debug, Clone)]
pub struct QueryResponse {
    state: State,
    first_value: Option<Option<Vec<u8>>>,
    rows: u64,
}

impl Default for QueryResponse {
    fn default() -> Self {
        QueryResponse::new()
    }
}

impl QueryResponse {
    pub fn new() -> Self {
        QueryResponse {
            state: State::Start,
            first_value: None,
            rows: 0,
        }
    }

    /// The first column of the first row: `None` if there was no row, `Some(None)` for NULL.
    pub fn first_value(&self) -> Option<Option<&[u8]>> {
        self.first_value.as_ref().map(|v| v.as_deref())
    }

    /// Rows seen, over all result sets.
    #[cfg(test)]
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn handle(&mut self, payload: &[u8]) -> Result<Progress, Malformed> {
        let first = *payload
            .first()
            .ok_or(Malformed("empty packet in a query response"))?;
        if first == ERR && self.state != State::Finished {
            self.state = State::Finished;
            return ServerError::parse(payload).map(Progress::Failed);
        }
        match self.state {
            State::Start => {
                if first == OK {
                    let ok = OkPacket::parse(payload)?;
                    return Ok(self.result_end(ok.status));
                }
                if first == 0xfb {
                    return Err(Malformed(
                        "the server asked for a LOCAL INFILE, which the checker never offers",
                    ));
                }
                self.state = State::Columns(column_count(payload)?);
                Ok(Progress::More)
            }
            State::Columns(left) => {
                if is_eof(payload) {
                    return Err(Malformed(
                        "query response: EOF before all column definitions",
                    ));
                }
                self.state = if left > 1 {
                    State::Columns(left - 1)
                } else {
                    State::ColumnsEnd
                };
                Ok(Progress::More)
            }
            State::ColumnsEnd => {
                if !is_eof(payload) {
                    return Err(Malformed(
                        "query response: no EOF after the column definitions",
                    ));
                }
                self.state = State::Rows;
                Ok(Progress::More)
            }
            State::Rows => {
                if is_eof(payload) {
                    return Ok(self.result_end(eof_status(payload)));
                }
                if self.first_value.is_none() {
                    let mut c = Cursor::new(payload);
                    let value = c.lenenc_bytes("query response: row")?;
                    self.first_value = Some(value.map(<[u8]>::to_vec));
                }
                self.rows += 1;
                Ok(Progress::More)
            }
            State::Finished => Err(Malformed("packet after the end of a query response")),
        }
    }

    fn result_end(&mut self, status: u16) -> Progress {
        if status & SERVER_MORE_RESULTS_EXISTS != 0 {
            self.state = State::Start;
            Progress::More
        } else {
            self.state = State::Finished;
            Progress::Done
        }
    }
}

/// The column count that starts a result set.
pub fn column_count(payload: &[u8]) -> Result<u64, Malformed> {
    let mut c = Cursor::new(payload);
    let count = c
        .lenenc_int("query response: column count")?
        .ok_or(Malformed("query response: NULL column count"))?;
    if count == 0 || count > MAX_COLUMNS || !c.is_empty() {
        return Err(Malformed("query response: impossible column count"));
    }
    Ok(count)
}

/// The name of a column definition (ColumnDefinition41: catalog, schema, table, org_table,
/// then the name the statement gave it).
pub fn column_name(payload: &[u8]) -> Result<&[u8], Malformed> {
    let mut c = Cursor::new(payload);
    for what in [
        "column definition: catalog",
        "column definition: schema",
        "column definition: table",
        "column definition: original table",
    ] {
        c.lenenc_bytes(what)?;
    }
    c.lenenc_bytes("column definition: name")?
        .ok_or(Malformed("column definition: NULL name"))
}

/// The values of a text-protocol row of `columns` columns; `None` for SQL NULL.
pub fn text_row(payload: &[u8], columns: usize) -> Result<Vec<Option<&[u8]>>, Malformed> {
    let mut c = Cursor::new(payload);
    let row = (0..columns)
        .map(|_| c.lenenc_bytes("row shorter than its columns"))
        .collect::<Result<Vec<_>, _>>()?;
    if !c.is_empty() {
        return Err(Malformed("row longer than its columns"));
    }
    Ok(row)
}

/// Reads a variable's value as the servers print booleans: `0`/`1`, `OFF`/`ON`, and MariaDB
/// 11's `read_only` modes (`NO_LOCK`, `NO_LOCK_NO_ADMIN`), which all refuse writes.
pub fn truthy(value: Option<&[u8]>) -> bool {
    match value {
        None => false,
        Some(v) => {
            let s = String::from_utf8_lossy(v);
            let s = s.trim();
            !(s.is_empty() || s == "0" || s.eq_ignore_ascii_case("OFF"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::mysql::fixtures::READ_ONLY_OFF;

    /// `SELECT @@global.read_only` with read_only on: the recorded answer with the row "1".
    const READ_ONLY_ANSWER: &[&[u8]] = &[
        READ_ONLY_OFF[0],
        READ_ONLY_OFF[1],
        READ_ONLY_OFF[2],
        b"\x011",
        READ_ONLY_OFF[4],
    ];

    fn run(packets: &[&[u8]]) -> (QueryResponse, Vec<Progress>) {
        let mut r = QueryResponse::new();
        let progress = packets.iter().map(|p| r.handle(p).unwrap()).collect();
        (r, progress)
    }

    #[test]
    fn result_set() {
        let (r, p) = run(READ_ONLY_OFF);
        assert_eq!(p.last(), Some(&Progress::Done));
        assert_eq!(r.first_value(), Some(Some(&b"0"[..])));
        assert!(!truthy(r.first_value().flatten()));
        let (r, p) = run(READ_ONLY_ANSWER);
        assert_eq!(p.last(), Some(&Progress::Done));
        assert!(p[..4].iter().all(|p| *p == Progress::More));
        assert_eq!(r.first_value(), Some(Some(&b"1"[..])));
        assert_eq!(r.rows(), 1);
        assert!(truthy(r.first_value().flatten()));
    }

    #[test]
    fn ok_and_err() {
        let (_, p) = run(&[b"\0\0\0\x02\0\0\0"]);
        assert_eq!(p, vec![Progress::Done]);
        let mut r = QueryResponse::new();
        match r
            .handle(b"\xff\x7a\x04#42S02Table 'x.y' doesn't exist")
            .unwrap()
        {
            Progress::Failed(e) => assert_eq!(e.code, 1146),
            other => panic!("{other:?}"),
        }
        assert!(r.handle(b"\0\0\0\x02\0\0\0").is_err());
    }

    #[test]
    fn err_in_the_middle_of_rows() {
        let mut r = QueryResponse::new();
        for p in &READ_ONLY_ANSWER[..4] {
            assert_eq!(r.handle(p).unwrap(), Progress::More);
        }
        assert!(matches!(
            r.handle(b"\xff\x25\x05#70100Query execution was interrupted").unwrap(),
            Progress::Failed(e) if e.code == 1317
        ));
    }

    #[test]
    fn several_result_sets() {
        // A CALL: a result set with MORE_RESULTS in its closing EOF, then the final OK.
        let (r, p) = run(&[
            b"\x01",
            b"\x03def\0\0\0\x011\0\x0c?\0\x01\0\0\0\x08\x81\0\0\0\0",
            b"\xfe\0\0\x0a\0",
            b"\x01x",
            b"\x01y",
            b"\xfe\0\0\x0a\0",
            b"\0\0\0\x02\0\0\0",
        ]);
        assert_eq!(p.last(), Some(&Progress::Done));
        assert_eq!(r.rows(), 2);
        assert_eq!(r.first_value(), Some(Some(&b"x"[..])));
    }

    #[test]
    fn null_and_no_rows() {
        let (r, _) = run(&[
            READ_ONLY_ANSWER[0],
            READ_ONLY_ANSWER[1],
            READ_ONLY_ANSWER[2],
            b"\xfb",
            READ_ONLY_ANSWER[4],
        ]);
        assert_eq!(r.first_value(), Some(None));
        let (r, _) = run(&[
            READ_ONLY_ANSWER[0],
            READ_ONLY_ANSWER[1],
            READ_ONLY_ANSWER[2],
            READ_ONLY_ANSWER[4],
        ]);
        assert_eq!(r.first_value(), None);
    }

    #[test]
    fn malformed_responses() {
        for bad in [&b""[..], b"\x00", b"\xfb", b"\x00\x00", b"\xfc\x01\x10"] {
            assert!(QueryResponse::new().handle(bad).is_err(), "{bad:?}");
        }
        let mut r = QueryResponse::new();
        r.handle(b"\x02").unwrap();
        assert!(r.handle(b"\xfe\0\0\x02\0").is_err());
    }

    #[test]
    fn column_names_and_rows() {
        assert_eq!(
            column_name(READ_ONLY_OFF[1]),
            Ok(&b"@@global.read_only"[..])
        );
        assert!(column_name(b"\x03def\0\0").is_err());
        assert_eq!(
            text_row(b"\x0212\xfb\x02me", 3),
            Ok(vec![Some(&b"12"[..]), None, Some(&b"me"[..])])
        );
        assert!(text_row(b"\x0212", 2).is_err());
        assert!(text_row(b"\x0212\x01x", 1).is_err());
    }

    #[test]
    fn booleans() {
        for (v, b) in [
            ("0", false),
            ("1", true),
            ("OFF", false),
            ("ON", true),
            ("NO_LOCK", true),
            ("", false),
        ] {
            assert_eq!(truthy(Some(v.as_bytes())), b, "{v}");
        }
        assert!(!truthy(None));
    }
}
