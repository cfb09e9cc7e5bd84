//! The nf_tables netlink conversation, in safe code: dumps read to their end (or until the caller
//! has what it needs), single gets, and a batch sent as one message whose ACKs are read only until
//! the first error, always under a receive timeout.
use std::collections::BTreeSet;
use std::io;
use std::ops::ControlFlow;
use std::time::Duration;

use super::sys::{self, MsgBuf};
use crate::nlmsg::{messages, NLMSG_DONE, NLMSG_ERROR};

/// How long the kernel may take to answer one recv (a dump chunk or an ACK).
const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// A receive buffer large enough for the biggest dump chunk the kernel sends.
const RECV_BUF_WORDS: usize = 32 * 1024; // 256 KiB
const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NFNL_MSG_BATCH_BEGIN` / `END` and `NFNL_BATCH_GENID` (linux/netfilter/nfnetlink.h).
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_BATCH_GENID: u16 = 1;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub const ERESTART: i32 = 85;

/// What went wrong on the socket; `nft::explain` turns it into a sentence.
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    #[error("cannot open a netlink socket to nf_tables")]
    Open(#[source] io::Error),
    #[error("cannot send to nf_tables")]
    Send(#[source] io::Error),
    #[error("no complete answer from nf_tables")]
    Recv(#[source] io::Error),
    /// The kernel refused message `seq` with `errno`.
    #[error("nf_tables refused a request ({})", io::Error::from_raw_os_error(*errno))]
    Kernel { seq: u32, errno: i32 },
    /// NLM_F_DUMP_INTR: the ruleset changed while it was being dumped.
    #[error("the ruleset changed while it was read")]
    Interrupted,
}

impl NlError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            NlError::Open(e) | NlError::Send(e) | NlError::Recv(e) => e.raw_os_error(),
            NlError::Kernel { errno, .. } => Some(*errno),
            NlError::Interrupted => None,
        }
    }
}

/// One netlink socket to nf_tables, reopened whenever a conversation was left unfinished (an
/// abandoned dump or an aborted batch would otherwise leave stale replies in its queue).
pub struct Conn {
    sock: Option<mnl::Socket>,
    seq: u32,
    buf: Vec<u64>,
}

fn open_socket() -> Result<mnl::Socket, NlError> {
    let sock = mnl::Socket::new(mnl::Bus::Netfilter).map_err(NlError::Open)?;
    sys::set_recv_timeout(&sock, RECV_TIMEOUT).map_err(NlError::Open)?;
    // Best effort: a larger queue only avoids ENOBUFS on big dumps.
    let _ = sys::set_recv_buffer(&sock, 4 << 20);
    Ok(sock)
}

/// The hand-written batch begin: nftnl's `Batch` writes its own without NFNL_BATCH_GENID, and
/// the generation id is what makes the kernel refuse (ERESTART) a batch planned on a ruleset
/// that changed since it was read (nfnetlink_rcv_batch).
pub fn batch_begin(out: &mut MsgBuf, seq: u32, genid: Option<u32>) {
    let mut m = Vec::with_capacity(28);
    let len: u32 = if genid.is_some() { 28 } else { 20 };
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&NFNL_MSG_BATCH_BEGIN.to_ne_bytes());
    m.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: AF_UNSPEC, version 0, res_id = the subsystem, big-endian.
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
    if let Some(g) = genid {
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&NFNL_BATCH_GENID.to_ne_bytes());
        m.extend_from_slice(&g.to_be_bytes());
    }
    out.push_bytes(&m);
}

/// Whether the batch end asks for an ACK, which kernels ≥ 6.10 send once the commit itself
/// succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEnd {
    Acked,
    Unacked,
}

impl BatchEnd {
    /// Kernels before 6.10 ignore NLM_F_ACK on BATCH_END (nfnetlink_rcv_batch), so waiting for
    /// that ACK there would only end in the timeout.
    pub fn of_this_kernel() -> BatchEnd {
        static END: std::sync::OnceLock<BatchEnd> = std::sync::OnceLock::new();
        *END.get_or_init(|| {
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            if acks_batch_end(&release) {
                BatchEnd::Acked
            } else {
                BatchEnd::Unacked
            }
        })
    }
}

/// Whether a kernel of this release (`6.12.8-amd64`) answers BATCH_END.
fn acks_batch_end(release: &str) -> bool {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 10)
}

/// The batch end.
pub fn batch_end(out: &mut MsgBuf, seq: u32, end: BatchEnd) {
    let mut m = Vec::with_capacity(20);
    m.extend_from_slice(&20u32.to_ne_bytes());
    m.extend_from_slice(&NFNL_MSG_BATCH_END.to_ne_bytes());
    let ack = match end {
        BatchEnd::Acked => libc::NLM_F_ACK as u16,
        BatchEnd::Unacked => 0,
    };
    let flags = libc::NLM_F_REQUEST as u16 | ack;
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
    out.push_bytes(&m);
}

impl Conn {
    pub fn open() -> Result<Conn, NlError> {
        Ok(Conn {
            sock: Some(open_socket()?),
            seq: 0,
            buf: vec![0; RECV_BUF_WORDS],
        })
    }

    pub fn next_seq(&mut self) -> u32 {
        // Sequence numbers only need to be unique on this socket; start from the clock like nft
        // so that replies to an earlier process on a reused port id cannot match.
        if self.seq == 0 {
            self.seq = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as u32)
                .unwrap_or(1)
                .max(1);
        }
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    fn sock(&mut self) -> Result<&mnl::Socket, NlError> {
        if self.sock.is_none() {
            self.sock = Some(open_socket()?);
        }
        Ok(self.sock.as_ref().unwrap())
    }

    /// One datagram; a failed receive leaves the conversation unfinished, so the socket goes.
    fn recv(&mut self) -> Result<usize, NlError> {
        let sock = self.sock.as_ref().expect("socket open");
        let bytes = sys::words_as_bytes(&mut self.buf);
        let n = sock.recv_raw(bytes).map_err(NlError::Recv);
        if n.is_err() {
            self.sock = None;
        }
        n
    }

    /// Send one request and hand every reply message with its sequence number to `on_msg` until
    /// NLMSG_DONE, an ACK or an error; `on_msg` may stop early, and the socket is then replaced.
    /// Returns true when the answer was read to its end.
    pub fn request(
        &mut self,
        req: &MsgBuf,
        seq: u32,
        mut on_msg: impl FnMut(&[u8]) -> ControlFlow<()>,
    ) -> Result<bool, NlError> {
        self.sock()?.send(req.bytes()).map_err(NlError::Send)?;
        // Bounded: a dump of a huge ruleset is many chunks, but never more than this.
        for _ in 0..1_000_000 {
            let n = self.recv()?;
            let bytes = &sys::words_as_bytes(&mut self.buf)[..n];
            let mut outcome: Option<Result<bool, NlError>> = None;
            for m in messages(bytes) {
                if m.seq != seq {
                    continue;
                }
                if m.flags & NLM_F_DUMP_INTR != 0 {
                    outcome = Some(Err(NlError::Interrupted));
                    break;
                }
                match m.ty {
                    NLMSG_DONE => {
                        outcome = Some(Ok(true));
                        break;
                    }
                    NLMSG_ERROR => {
                        let errno = m.error_code();
                        outcome = Some(if errno == 0 {
                            Ok(true)
                        } else {
                            Err(NlError::Kernel { seq, errno })
                        });
                        break;
                    }
                    _ => {
                        if on_msg(m.bytes).is_break() {
                            outcome = Some(Ok(false));
                            break;
                        }
                    }
                }
            }
            match outcome {
                None => continue,
                Some(Ok(true)) => return Ok(true),
                Some(other) => {
                    // Whatever is left of the answer stays queued: start the next one afresh.
                    self.sock = None;
                    return other;
                }
            }
        }
        self.sock = None;
        Err(NlError::Recv(io::Error::new(
            io::ErrorKind::TimedOut,
            "answer never ended",
        )))
    }

    /// Send a whole batch in one sendmsg and wait for the ACK of every sequence number in
    /// `acks`, stopping at the first error: after an error the kernel has aborted the batch and
    /// kernels ≥ 6.10 send nothing more for BATCH_END.
    pub fn send_batch(&mut self, batch: &MsgBuf, acks: &[u32]) -> Result<(), NlError> {
        let sock = self.sock()?;
        if batch.bytes().len() > 200_000 {
            sys::set_send_buffer(sock, batch.bytes().len() + 4096).map_err(NlError::Send)?;
        }
        let sent = sock.send(batch.bytes()).map_err(NlError::Send);
        if let Err(e) = sent {
            self.sock = None;
            return Err(e);
        }
        let mut pending: BTreeSet<u32> = acks.iter().copied().collect();
        for _ in 0..1_000_000 {
            if pending.is_empty() {
                return Ok(());
            }
            let n = self.recv()?;
            let bytes = &sys::words_as_bytes(&mut self.buf)[..n];
            for m in messages(bytes) {
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                let errno = m.error_code();
                if errno != 0 {
                    self.sock = None;
                    return Err(NlError::Kernel { seq: m.seq, errno });
                }
                pending.remove(&m.seq);
            }
        }
        self.sock = None;
        Err(NlError::Recv(io::Error::new(
            io::ErrorKind::TimedOut,
            "ACKs never ended",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kernels_from_6_10_ack_the_batch_end() {
        assert!(acks_batch_end("6.10.0\n"));
        assert!(acks_batch_end("6.12.8-amd64"));
        assert!(acks_batch_end("7.0-rc1"));
        assert!(!acks_batch_end("6.9.12-1-pve"));
        assert!(!acks_batch_end("5.15.0-91-generic"));
        assert!(
            !acks_batch_end(""),
            "an unreadable release waits for no ACK"
        );
    }

    #[test]
    fn an_acked_batch_end_asks_for_the_ack() {
        for (end, ack) in [(BatchEnd::Acked, true), (BatchEnd::Unacked, false)] {
            let mut b = MsgBuf::new();
            batch_end(&mut b, 9, end);
            let flags = u16::from_ne_bytes([b.bytes()[6], b.bytes()[7]]);
            assert_eq!(flags & libc::NLM_F_ACK as u16 != 0, ack);
            assert_eq!(&b.bytes()[8..12], &9u32.to_ne_bytes());
        }
    }
}
