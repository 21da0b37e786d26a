//! Upgrading halb without a failover (`halb run --takeover`), as HAProxy's `-x` does: the new
//! process takes the listening sockets and the VRRP role from the running one, instead of
//! starting as BACKUP while the old one sends a priority 0 advert and removes its VIPs.
//!
//! Every daemon listens on a hand-over socket next to its control socket
//! ([`socket_path`], mode 0600). The exchange, in order:
//! 1. new → old `takeover`; old → new: its MASTER instances and its listening sockets, the
//!    descriptors themselves passed with `SCM_RIGHTS`. The old process goes on serving.
//! 2. The new process starts: its proxy serves on the inherited sockets (the kernel's accept
//!    queue is the same, so both processes accept for a moment and no client waits on a
//!    closed socket); its VRRP instances start as BACKUP and hear the old MASTER's adverts;
//!    the VIPs are not "left by a predecessor" and stay.
//! 3. new → old `release`; the old process stops its VRRP part where it stands (no priority 0
//!    advert, VIPs and IPVS services left in place), stops accepting, gives up its control
//!    and hand-over sockets, and answers with the instances that were MASTER at that moment.
//! 4. The new process makes those instances MASTER at once (first advert immediately, so the
//!    peers see no gap longer than one advert interval and no transition), binds the control
//!    and hand-over sockets, and renews the VIPs' leases. The old process lets its
//!    established connections finish (at most the drain timeout) and exits.
//!
//! If the new process goes away before `release`, the old one carries on as before.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use halb_dataplane::proxy::{HandedSocket, Listeners};
use halb_lb::table::ProtocolKey;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::event::InstanceStatus;

/// How a daemon hands over and takes over.
#[derive(Debug, Clone)]
pub struct HandOverOptions {
    /// Take over from the halb that answers on the hand-over socket instead of starting
    /// afresh.
    pub takeover: bool,
    /// How long a process that handed over lets its established connections run before it
    /// exits anyway.
    pub drain_timeout: Duration,
}

impl Default for HandOverOptions {
    fn default() -> Self {
        HandOverOptions {
            takeover: false,
            drain_timeout: Duration::from_secs(300),
        }
    }
}

/// The hand-over socket of the daemon whose control socket is `control`: `CONTROL.handover`.
pub fn socket_path(control: &Path) -> PathBuf {
    let mut path = control.as_os_str().to_owned();
    path.push(".handover");
    PathBuf::from(path)
}

/// How long each side waits for the other's next message.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the new process waits for its proxy to serve on every inherited socket before it
/// releases the old one anyway (a service it no longer has keeps its socket unclaimed).
const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);

/// The most descriptors one hand-over passes (the kernel's `SCM_MAX_FD` is 253).
const MAX_SOCKETS: usize = 250;

/// Old → new, with the descriptors.
#[derive(Debug, Serialize, Deserialize)]
struct Offer {
    /// The instances that are MASTER now.
    masters: Vec<String>,
    /// What each descriptor serves, in the order they are passed.
    sockets: Vec<(ProtocolKey, SocketAddr)>,
}

/// Old → new, once it has stopped.
#[derive(Debug, Serialize, Deserialize)]
struct Released {
    masters: Vec<String>,
}

/// What the VRRP shell needs to know about a hand-over.
pub(crate) struct VrrpHandOver {
    /// This process takes over from a running one: the VIPs on the interfaces are that
    /// process's, not leftovers.
    pub(crate) taking_over: bool,
    /// The instances to make MASTER at once, when the old process has let go.
    pub(crate) resume: mpsc::Receiver<Vec<String>>,
    /// Set when the stop that comes is a hand-over: leave VIPs and adverts as they are.
    pub(crate) handed_over: Arc<AtomicBool>,
}

/// A release the running daemon was asked for: the VRRP part stops, then the names of the
/// instances that were MASTER go back through `reply`.
pub(crate) struct ReleaseRequest {
    /// The process id of the new halb, from the hand-over socket's peer credentials: under
    /// systemd it becomes the service's main process.
    pub(crate) successor: Option<u32>,
    pub(crate) reply: oneshot::Sender<Vec<String>>,
}

/// The names of the instances that are MASTER in `views`.
pub(crate) fn masters(views: &[InstanceStatus]) -> Vec<String> {
    views
        .iter()
        .filter(|v| v.is_master())
        .map(|v| v.name.clone())
        .collect()
}

/// The old side: answers one `takeover` at a time on the hand-over socket; the socket file is
/// removed when dropped.
pub(crate) struct Server {
    path: PathBuf,
}

impl Server {
    pub(crate) fn start(
        path: &Path,
        views: watch::Receiver<Vec<InstanceStatus>>,
        listeners: Listeners,
        release: mpsc::Sender<ReleaseRequest>,
    ) -> Result<Server> {
        let listener = crate::control::server::bind_private(path)?
            .into_std()
            .context("the hand-over socket")?;
        listener
            .set_nonblocking(false)
            .context("the hand-over socket")?;
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("handover".into())
            .spawn(move || serve(listener, views, listeners, release, shown))
            .context("starting the hand-over thread")?;
        Ok(Server {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(
    listener: UnixListener,
    views: watch::Receiver<Vec<InstanceStatus>>,
    listeners: Listeners,
    release: mpsc::Sender<ReleaseRequest>,
    path: String,
) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                warn!("hand-over socket {path}: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        match hand_over(stream, &views, &listeners, &release) {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => warn!("hand-over on {path} abandoned, this process goes on: {e:#}"),
        }
    }
}

/// One exchange on the old side; true once the new process has taken over.
fn hand_over(
    stream: UnixStream,
    views: &watch::Receiver<Vec<InstanceStatus>>,
    listeners: &Listeners,
    release: &mpsc::Sender<ReleaseRequest>,
) -> Result<bool> {
    stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    let successor = peer_pid(&stream);
    let mut reader = BufReader::new(stream.try_clone()?);
    if read_line(&mut reader)? != "takeover" {
        return Ok(false);
    }
    let sockets = listeners
        .export()
        .context("duplicating the listening sockets")?;
    if sockets.len() > MAX_SOCKETS {
        bail!(
            "{} listening sockets; at most {MAX_SOCKETS} can be handed over",
            sockets.len()
        );
    }
    let offer = Offer {
        masters: masters(&views.borrow()),
        sockets: sockets.iter().map(|s| (s.protocol, s.addr)).collect(),
    };
    info!(
        "A new halb takes over: handing over {} listening socket(s); MASTER of {:?}",
        offer.sockets.len(),
        offer.masters
    );
    let mut line = serde_json::to_vec(&offer)?;
    line.push(b'\n');
    let fds: Vec<RawFd> = sockets.iter().map(|s| s.fd.as_raw_fd()).collect();
    let cmsgs = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&fds)]
    };
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&line)],
        &cmsgs,
        MsgFlags::empty(),
        None,
    )
    .context("sending the listening sockets")?;
    drop(sockets);

    if read_line(&mut reader)? != "release" {
        bail!("the new process did not ask for the release");
    }
    let (reply, masters) = oneshot::channel();
    release
        .blocking_send(ReleaseRequest { successor, reply })
        .context("the daemon is stopping")?;
    let masters = masters.blocking_recv().context("the daemon is stopping")?;
    let mut line = serde_json::to_vec(&Released { masters })?;
    line.push(b'\n');
    (&stream)
        .write_all(&line)
        .context("answering the release")?;
    Ok(true)
}

/// The process at the other end of `stream` (`SO_PEERCRED`), when the kernel says.
fn peer_pid(stream: &UnixStream) -> Option<u32> {
    let credentials =
        nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    u32::try_from(credentials.pid()).ok().filter(|&pid| pid > 0)
}

fn read_line(reader: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .context("reading from the other halb")?;
    if line.is_empty() {
        bail!("the other halb closed the hand-over connection");
    }
    Ok(line.trim_end().to_string())
}

/// The new side's connection to the running daemon, between the offer and the release.
pub(crate) struct Predecessor {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Predecessor {
    /// Asks the daemon answering on `path` to hand over; returns the connection and its
    /// listening sockets.
    pub(crate) fn connect(path: &Path) -> Result<(Predecessor, Vec<HandedSocket>)> {
        let stream = UnixStream::connect(path).with_context(|| {
            format!(
                "--takeover: no halb answers on {} (start without --takeover)",
                path.display()
            )
        })?;
        stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
        (&stream).write_all(b"takeover\n")?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut space = nix::cmsg_space!([RawFd; MAX_SOCKETS]);
        let mut fds: Vec<OwnedFd> = Vec::new();
        let received = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let message = recvmsg::<()>(
                stream.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .context("receiving the listening sockets")?;
            for cmsg in message.cmsgs().context("reading the passed descriptors")? {
                if let ControlMessageOwned::ScmRights(raw) = cmsg {
                    // SAFETY: the kernel just installed these descriptors in this process
                    // for this message; nothing else owns them.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            message.bytes
        };
        let mut text = buf[..received].to_vec();
        let mut reader = BufReader::new(stream.try_clone()?);
        if !text.ends_with(b"\n") {
            // The rest of a long offer comes without descriptors.
            reader
                .read_until(b'\n', &mut text)
                .context("reading the offer")?;
        }
        let offer: Offer = serde_json::from_slice(&text).context("reading the offer")?;
        if offer.sockets.len() != fds.len() {
            bail!(
                "the offer names {} sockets but {} descriptors came",
                offer.sockets.len(),
                fds.len()
            );
        }
        info!(
            "Taking over from the running halb: {} listening socket(s); it is MASTER of {:?}",
            fds.len(),
            offer.masters
        );
        let sockets = offer
            .sockets
            .into_iter()
            .zip(fds)
            .map(|((protocol, addr), fd)| HandedSocket { protocol, addr, fd })
            .collect();
        Ok((Predecessor { stream, reader }, sockets))
    }

    /// Tells the old daemon to let go; returns the instances it was MASTER of.
    pub(crate) fn release(mut self) -> Result<Vec<String>> {
        (&self.stream)
            .write_all(b"release\n")
            .context("asking the running halb to let go")?;
        let line = read_line(&mut self.reader)?;
        let released: Released = serde_json::from_str(&line).context("reading the release")?;
        Ok(released.masters)
    }
}

/// The new side, once its proxy is up: waits until it serves on every inherited socket,
/// releases the old process, and returns the instances to make MASTER.
pub(crate) async fn release_when_ready(
    predecessor: Predecessor,
    listeners: &Listeners,
) -> Result<Vec<String>> {
    let start = Instant::now();
    while listeners.unclaimed() > 0 && start.elapsed() < CLAIM_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if listeners.unclaimed() > 0 {
        warn!(
            "{} inherited listening socket(s) serve no virtual server of this configuration; \
             closing them",
            listeners.unclaimed()
        );
    }
    let masters = tokio::task::spawn_blocking(move || predecessor.release())
        .await
        .context("the release task")??;
    info!("The previous halb let go; MASTER of {masters:?} here now");
    Ok(masters)
}

/// The old side, after the release: waits until the connections it accepted are done, or
/// `timeout`.
pub(crate) async fn drain(listeners: &Listeners, timeout: Duration) {
    let start = Instant::now();
    let open = listeners.active_connections();
    info!("Handed over to the new halb; draining {open} connection(s)");
    loop {
        let open = listeners.active_connections();
        if open == 0 {
            info!("Drained; exiting (VIPs and virtual servers stay with the new halb)");
            return;
        }
        if start.elapsed() >= timeout {
            warn!(
                "{open} connection(s) still open after the drain timeout of {} s; closing them",
                timeout.as_secs()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A release request, kept until the VRRP part has stopped.
pub(crate) type ReleaseSlot = Arc<Mutex<Option<ReleaseRequest>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handover_socket_sits_next_to_the_control_socket() {
        assert_eq!(
            socket_path(Path::new("/run/halb/halb.sock")),
            Path::new("/run/halb/halb.sock.handover")
        );
    }

    #[tokio::test]
    async fn sockets_and_roles_cross_and_the_old_side_waits_for_the_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sock");
        let old_listeners = Listeners::default();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        old_listeners.bound(ProtocolKey::Tcp, addr, OwnedFd::from(tcp));
        let (_views_tx, views) = watch::channel(Vec::new());
        let (release_tx, mut release_rx) = mpsc::channel(1);
        let _server = Server::start(&path, views, old_listeners, release_tx).unwrap();

        let connecting = path.clone();
        let (predecessor, sockets) =
            tokio::task::spawn_blocking(move || Predecessor::connect(&connecting))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(sockets.len(), 1);
        assert_eq!(sockets[0].addr, addr);
        let inherited = std::net::TcpListener::from(sockets.into_iter().next().unwrap().fd);
        assert_eq!(inherited.local_addr().unwrap(), addr);

        let releasing = tokio::task::spawn_blocking(move || predecessor.release());
        let request = release_rx.recv().await.unwrap();
        assert_eq!(
            request.successor,
            Some(std::process::id()),
            "the successor is the process at the other end"
        );
        request.reply.send(vec!["VI_1".into()]).unwrap();
        assert_eq!(releasing.await.unwrap().unwrap(), ["VI_1"]);
    }
}
