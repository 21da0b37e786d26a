//! HTTP_GET and SSL_GET: a GET for every `url`, each on its own connection, judged on the
//! status code, the MD5 digest of the body and a regex over the body.
//!
//! The request is keepalived's: `GET PATH HTTP/1.x`, `User-Agent: KeepAliveClient`,
//! `Connection: close` for `1.0C` and `1.1`, and `Host:` the url's `virtualhost`, else the
//! checker's, the real server's or the virtual server's, else the address and port connected to.
//!
//! Differences from keepalived, all on the lenient side: keepalived checks one url per
//! `delay_loop` tick, halb checks all of them in one probe (stopping at the first that fails); a
//! chunked body is decoded before it is hashed and matched (keepalived hashes the raw chunks);
//! the regex sees the body only (keepalived's first buffer also holds the headers). keepalived
//! compiles the regex with PCRE2, halb with the `regex` crate: patterns that need look-around
//! or back-references are refused when the checker is set up.

use super::http_response::{Response, ResponseReader};
use super::net::{Step, Target};
use super::tls;
use super::{ProbeFailure, ProbeOk, ProbeResult, SetupError};
use halb_config::model::{HttpCheck, HttpProtocol, Url, UrlRegex};
use regex::bytes::{Regex, RegexBuilder};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// How much of a body is kept for the regex.
const KEEP_BODY: usize = 4 * 1024 * 1024;

#[derive(Debug)]
pub struct HttpProbe {
    pub target: Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    urls: Vec<UrlProbe>,
}

#[derive(Debug)]
struct UrlProbe {
    path: String,
    request: Vec<u8>,
    server_name: ServerName<'static>,
    status_codes: Vec<(u16, u16)>,
    digest: Option<[u8; 16]>,
    regex: Option<RegexProbe>,
}

#[derive(Debug)]
struct RegexProbe {
    pattern: String,
    regex: Regex,
    no_match: bool,
    min_offset: usize,
    max_offset: Option<usize>,
}

impl HttpProbe {
    /// `tls`: SSL_GET. `virtualhost`: the Host for urls without their own (the checker's, else
    /// the real server's, else the virtual server's). `sni_virtualhost`: the SNI name for urls
    /// without their own (keepalived: the checker's, else the virtual server's).
    pub fn new(
        cfg: &HttpCheck,
        tls: bool,
        target: Target,
        virtualhost: Option<&str>,
        sni_virtualhost: Option<&str>,
    ) -> Result<HttpProbe, SetupError> {
        let protocol = cfg.http_protocol.unwrap_or(HttpProtocol::Http10);
        let urls = cfg
            .urls
            .iter()
            .map(|url| {
                let host = url.virtualhost.as_deref().or(virtualhost);
                let sni = url.virtualhost.as_deref().or(sni_virtualhost);
                UrlProbe::new(url, protocol, &target, host, sni)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tls = if tls {
            let config = tls::client_config(cfg.enable_sni)
                .map_err(|e| SetupError(format!("TLS client: {e}")))?;
            Some(config)
        } else {
            None
        };
        Ok(HttpProbe { target, tls, urls })
    }

    pub async fn check(&self) -> ProbeResult {
        for url in &self.urls {
            let step = Step::new("connecting to");
            self.target
                .within_deadline(&step, self.check_url(url, &step))
                .await
                .map_err(|mut f| {
                    if f.timed_out() {
                        f.message = format!("{} ({})", f.message, url.path);
                    }
                    f
                })?;
        }
        let paths: Vec<&str> = self.urls.iter().map(|u| u.path.as_str()).collect();
        Ok(ProbeOk::new(format!(
            "{} answered {}",
            self.target.peer(),
            paths.join(", ")
        )))
    }

    async fn check_url(&self, url: &UrlProbe, step: &Step) -> Result<(), ProbeFailure> {
        let stream = self.target.tcp().await?;
        let response = match &self.tls {
            Some(config) => {
                step.set("in the TLS handshake with");
                let stream = TlsConnector::from(config.clone())
                    .connect(url.server_name.clone(), stream)
                    .await
                    .map_err(|e| {
                        ProbeFailure::new(format!(
                            "SSL handshake/communication error with {}: {e}",
                            self.target.peer()
                        ))
                    })?;
                exchange(stream, url, &self.target.peer(), step).await?
            }
            None => exchange(stream, url, &self.target.peer(), step).await?,
        };
        url.judge(&response, &format!("{}{}", self.target.peer(), url.path))
    }
}

async fn exchange<S>(
    mut stream: S,
    url: &UrlProbe,
    peer: &str,
    step: &Step,
) -> Result<Response, ProbeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    step.set("sending the request to");
    stream.write_all(&url.request).await.map_err(|e| {
        ProbeFailure::io(
            &e,
            format!("Cannot send get request to {peer}{}: {e}", url.path),
        )
    })?;
    stream.flush().await.map_err(|e| {
        ProbeFailure::io(
            &e,
            format!("Cannot send get request to {peer}{}: {e}", url.path),
        )
    })?;
    step.set("reading the response from");
    let mut reader = ResponseReader::new(
        if url.regex.is_some() { KEEP_BODY } else { 0 },
        url.digest.is_some(),
    );
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // A TLS server that closes without close_notify: keepalived does not mind.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => {
                return Err(ProbeFailure::io(
                    &e,
                    format!("Read error with {peer}{}: {e}", url.path),
                ))
            }
        };
        if n == 0 {
            break;
        }
        if reader.feed(&buf[..n]).map_err(|e| {
            ProbeFailure::protocol(format!("bad HTTP response from {peer}{}: {e}", url.path))
        })? {
            break;
        }
    }
    if !reader.has_headers() {
        return Err(ProbeFailure::protocol(format!(
            "Read, no data received from {peer}{} (closed before a complete header)",
            url.path
        )));
    }
    Ok(reader.finish())
}

impl UrlProbe {
    fn new(
        url: &Url,
        protocol: HttpProtocol,
        target: &Target,
        host: Option<&str>,
        sni: Option<&str>,
    ) -> Result<UrlProbe, SetupError> {
        let host_header = match host {
            Some(h) => h.to_string(),
            // keepalived's request_template(_ipv6): the address connected to, with its port.
            None => match target.connect {
                SocketAddr::V4(a) => a.to_string(),
                SocketAddr::V6(_) => target.peer(),
            },
        };
        let (minor, close) = match protocol {
            HttpProtocol::Http10 => (0, false),
            HttpProtocol::Http10Close => (0, true),
            HttpProtocol::Http11 => (1, true),
        };
        let request = format!(
            "GET {} HTTP/1.{minor}\r\nUser-Agent: KeepAliveClient\r\n{}Host: {host_header}\r\n\r\n",
            url.path,
            if close { "Connection: close\r\n" } else { "" },
        );
        Ok(UrlProbe {
            path: url.path.clone(),
            request: request.into_bytes(),
            server_name: tls::server_name(sni, target.connect.ip()),
            status_codes: url.status_codes.clone(),
            digest: url.digest,
            regex: url.regex.as_ref().map(RegexProbe::new).transpose()?,
        })
    }

    fn judge(&self, r: &Response, from: &str) -> Result<(), ProbeFailure> {
        let Some(status) = r.status else {
            return Err(ProbeFailure::protocol(format!(
                "HTTP status line unreadable from {from}"
            )));
        };
        if !self
            .status_codes
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
        {
            return Err(ProbeFailure::protocol(format!(
                "HTTP status {status} from {from}, expected {}",
                ranges(&self.status_codes)
            )));
        }
        if let Some(want) = self.digest {
            let got = r.md5.unwrap_or_default();
            if got != want {
                return Err(ProbeFailure::protocol(format!(
                    "MD5 digest error from {from}: body ({} bytes{}) hashes to {}, expected {}",
                    r.body_len,
                    if r.cut_short { ", cut short" } else { "" },
                    hex(&got),
                    hex(&want)
                )));
            }
        }
        if let Some(re) = &self.regex {
            let matched = re.matches(&r.body);
            if matched == re.no_match {
                return Err(ProbeFailure::protocol(if re.no_match {
                    format!(
                        "Regex match failed from {from}: body matches /{}/ (no_match)",
                        re.pattern
                    )
                } else {
                    format!(
                        "Regex match failed from {from}: body does not match /{}/",
                        re.pattern
                    )
                }));
            }
        }
        Ok(())
    }
}

impl RegexProbe {
    fn new(cfg: &UrlRegex) -> Result<RegexProbe, SetupError> {
        let mut b = RegexBuilder::new(&cfg.pattern);
        // PCRE2 matches bytes unless told `utf`.
        b.unicode(false);
        for option in &cfg.options {
            match option.as_str() {
                "caseless" => {
                    b.case_insensitive(true);
                }
                "multiline" => {
                    b.multi_line(true);
                }
                "dotall" => {
                    b.dot_matches_new_line(true);
                }
                "extended" => {
                    b.ignore_whitespace(true);
                }
                "ungreedy" => {
                    b.swap_greed(true);
                }
                "utf" | "ucp" => {
                    b.unicode(true);
                }
                // The others tune PCRE2's engine or its errors; nothing to map.
                _ => {}
            }
        }
        let regex = b.build().map_err(|e| {
            SetupError(format!(
                "regex {:?} cannot be used (halb's regex engine has no look-around or back-references): {e}",
                cfg.pattern
            ))
        })?;
        Ok(RegexProbe {
            pattern: cfg.pattern.clone(),
            regex,
            no_match: cfg.no_match,
            min_offset: usize::try_from(cfg.min_offset.unwrap_or(0)).unwrap_or(usize::MAX),
            max_offset: cfg.max_offset.and_then(|m| usize::try_from(m).ok()),
        })
    }

    /// keepalived's rule: the match is searched from `regex_min_offset` and must start at or
    /// before `regex_max_offset`.
    fn matches(&self, body: &[u8]) -> bool {
        if self.min_offset > body.len() {
            return false;
        }
        match self.regex.find_at(body, self.min_offset) {
            Some(m) => self.max_offset.is_none_or(|max| m.start() <= max),
            None => false,
        }
    }
}

fn ranges(codes: &[(u16, u16)]) -> String {
    codes
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn target() -> Target {
        Target::new("10.0.0.1:80".parse().unwrap(), Duration::from_secs(1))
    }

    #[test]
    fn request_text() {
        let mut url = Url::new("/health".into());
        let u = UrlProbe::new(&url, HttpProtocol::Http10, &target(), None, None).unwrap();
        assert_eq!(
            String::from_utf8(u.request).unwrap(),
            "GET /health HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 10.0.0.1:80\r\n\r\n"
        );
        url.virtualhost = Some("www.example.org".into());
        let u = UrlProbe::new(&url, HttpProtocol::Http11, &target(), Some("other"), None).unwrap();
        assert_eq!(
            String::from_utf8(u.request).unwrap(),
            "GET /health HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: other\r\n\r\n"
        );
        let t6 = Target::new("[fd00::1]:8080".parse().unwrap(), Duration::from_secs(1));
        let u = UrlProbe::new(
            &Url::new("/".into()),
            HttpProtocol::Http10Close,
            &t6,
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(u.request).unwrap(),
            "GET / HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: [fd00::1]:8080\r\n\r\n"
        );
    }

    fn regex(pattern: &str, min: Option<u64>, max: Option<u64>) -> RegexProbe {
        RegexProbe::new(&UrlRegex {
            pattern: pattern.into(),
            no_match: false,
            options: vec![],
            min_offset: min,
            max_offset: max,
            stack: None,
        })
        .unwrap()
    }

    #[test]
    fn regex_offsets() {
        let body = b"0123456789 OK";
        assert!(regex("OK", None, None).matches(body));
        assert!(regex("OK", Some(11), None).matches(body));
        assert!(!regex("OK", Some(12), None).matches(body));
        assert!(regex("OK", None, Some(11)).matches(body));
        assert!(!regex("OK", None, Some(10)).matches(body));
        assert!(!regex("OK", Some(100), None).matches(body));
    }

    #[test]
    fn regex_refused_when_pcre_only() {
        let e = RegexProbe::new(&UrlRegex {
            pattern: "(?<=a)b".into(),
            no_match: false,
            options: vec![],
            min_offset: None,
            max_offset: None,
            stack: None,
        });
        assert!(e.is_err());
    }

    #[test]
    fn status_ranges_text() {
        assert_eq!(ranges(&[(200, 299), (301, 301)]), "200-299,301");
    }
}
