//! Socket options libmnl does not set: a receive timeout and forced buffer sizes.
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Receive timeout: a reply that never comes (an aborted batch on kernels ≥ 6.10 sends no ACK
/// for BATCH_END) must not hang the tool.
pub fn set_recv_timeout(sock: &mnl::Socket, t: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    setsockopt(sock, libc::SO_RCVTIMEO, &tv)
}

/// A batch is one sendmsg: netlink_sendmsg refuses anything above the socket's send buffer, so
/// it is raised to the batch's size (SO_SNDBUFFORCE needs CAP_NET_ADMIN, which we have anyway;
/// nft does the same in mnl_set_sndbuffer).
pub fn set_send_buffer(sock: &mnl::Socket, bytes: usize) -> io::Result<()> {
    let n: libc::c_int = bytes.min(i32::MAX as usize) as libc::c_int;
    setsockopt(sock, libc::SO_SNDBUFFORCE, &n)
}

/// A large receive buffer so a dump of a big chain arrives without ENOBUFS.
pub fn set_recv_buffer(sock: &mnl::Socket, bytes: usize) -> io::Result<()> {
    let n: libc::c_int = bytes.min(i32::MAX as usize) as libc::c_int;
    setsockopt(sock, libc::SO_RCVBUFFORCE, &n)
}

fn setsockopt<T>(sock: &mnl::Socket, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live `T` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
