//! Command line of conn-bench (no parser crate: a handful of flags).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub const USAGE: &str = "usage:
  conn-bench serve --listen ADDR[,ADDR...] [--threads T]
  conn-bench rate --target ADDR[,ADDR...] --concurrency C --duration SECONDS [--sources A.B.C.FIRST-LAST] [--threads T]
  conn-bench hold --target ADDR --count N [--parallel P] [--sources A.B.C.FIRST-LAST] [--threads T]";

pub struct Parsed {
    pub threads: usize,
    pub command: Command,
}

pub enum Command {
    Serve { listen: Vec<SocketAddr> },
    Rate(RateOpts),
    Hold(HoldOpts),
}

pub struct RateOpts {
    pub targets: Vec<SocketAddr>,
    pub sources: Vec<Ipv4Addr>,
    pub concurrency: usize,
    pub duration: Duration,
}

pub struct HoldOpts {
    pub target: SocketAddr,
    pub sources: Vec<Ipv4Addr>,
    pub count: usize,
    pub parallel: usize,
}

pub fn parse(argv: &[String]) -> Result<Parsed, String> {
    let (sub, rest) = argv.split_first().ok_or("no command given")?;
    let mut flags = Flags::new(rest)?;
    let threads = flags.take_num("--threads")?.unwrap_or(2).max(1);
    let command = match sub.as_str() {
        "serve" => Command::Serve {
            listen: addrs(&flags.require("--listen")?)?,
        },
        "rate" => Command::Rate(RateOpts {
            targets: addrs(&flags.require("--target")?)?,
            sources: sources(flags.take("--sources"))?,
            concurrency: flags.take_num("--concurrency")?.unwrap_or(32).max(1),
            duration: Duration::from_secs(flags.take_num("--duration")?.unwrap_or(10) as u64),
        }),
        "hold" => Command::Hold(HoldOpts {
            target: addr(&flags.require("--target")?)?,
            sources: sources(flags.take("--sources"))?,
            count: flags.take_num("--count")?.ok_or("--count is required")?,
            parallel: flags.take_num("--parallel")?.unwrap_or(256).max(1),
        }),
        other => return Err(format!("unknown command {other:?}")),
    };
    flags.finish()?;
    Ok(Parsed { threads, command })
}

/// Flag/value pairs, each taken once; whatever is left over is an error.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn new(rest: &[String]) -> Result<Self, String> {
        if !rest.len().is_multiple_of(2) {
            return Err(format!("flag {:?} has no value", rest[rest.len() - 1]));
        }
        Ok(Flags(
            rest.chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
        ))
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(i).1)
    }

    fn require(&mut self, name: &str) -> Result<String, String> {
        self.take(name).ok_or_else(|| format!("{name} is required"))
    }

    fn take_num(&mut self, name: &str) -> Result<Option<usize>, String> {
        self.take(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("{name}: {v:?} is not a whole number"))
            })
            .transpose()
    }

    fn finish(self) -> Result<(), String> {
        match self.0.first() {
            Some((k, _)) => Err(format!("unknown flag {k:?}")),
            None => Ok(()),
        }
    }
}

fn addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an IP:PORT address"))
}

fn addrs(s: &str) -> Result<Vec<SocketAddr>, String> {
    s.split(',').map(addr).collect()
}

/// "127.77.10.1-64" -> 127.77.10.1 ..= 127.77.10.64; absent -> no binding (the kernel picks).
fn sources(spec: Option<String>) -> Result<Vec<Ipv4Addr>, String> {
    let Some(spec) = spec else {
        return Ok(Vec::new());
    };
    let bad = || format!("--sources {spec:?}: expected A.B.C.FIRST-LAST");
    let (first, last) = spec.split_once('-').ok_or_else(bad)?;
    let first: Ipv4Addr = first.parse().map_err(|_| bad())?;
    let last: u8 = last.parse().map_err(|_| bad())?;
    let [a, b, c, lo] = first.octets();
    if last < lo {
        return Err(bad());
    }
    Ok((lo..=last).map(|d| Ipv4Addr::new(a, b, c, d)).collect())
}
