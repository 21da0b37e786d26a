//! `splice(2)` and the pipe it needs: the kernel moves a socket's received pages into a pipe
//! and from the pipe into the other socket, so the payload never enters userspace.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking pipe, the buffer between the two sockets of one direction.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// How much it holds; one splice moves at most this much.
    capacity: usize,
}

impl Pipe {
    /// A pipe of about `size` bytes (the kernel rounds to pages and caps it at
    /// `/proc/sys/fs/pipe-max-size`; if it refuses, the default 64 KiB pipe is used).
    pub(crate) fn new(size: usize) -> io::Result<Pipe> {
        let mut fds: [RawFd; 2] = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let wanted = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        // SAFETY: plain fcntl on a descriptor we own.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, wanted) };
        // SAFETY: as above.
        let actual = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let capacity = usize::try_from(actual).unwrap_or(0).max(4096);
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// Moves what `from` (a socket) has received into the pipe, at most its capacity.
    /// `Ok(0)` is the peer's FIN.
    pub(crate) fn fill_from(&self, from: RawFd) -> io::Result<usize> {
        splice(from, self.write.as_raw_fd(), self.capacity)
    }

    /// Moves up to `len` bytes from the pipe into `to` (a socket).
    pub(crate) fn drain_into(&self, to: RawFd, len: usize) -> io::Result<usize> {
        splice(self.read.as_raw_fd(), to, len)
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (the callers hold their
    // owners); null offsets are what splice expects for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Errors that mean "this pair of descriptors cannot splice", not "the connection broke".
pub(crate) fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
    )
}
