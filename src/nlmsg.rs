//! Netlink's message framing (netlink(7)), the one thing the nf_tables conversation
//! (`firewall::nft::netlink`) and the sock_diag dump (`sockets`) read alike: a 16-byte header
//! (length, type, flags, sequence, port id), messages aligned to 4 bytes, an error or an ACK as
//! NLMSG_ERROR with a negative errno, and NLMSG_DONE at the end of a dump.

pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

/// One message of a received buffer: its header fields and its bytes (header included).
pub struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub bytes: &'a [u8],
}

impl Msg<'_> {
    /// What follows the header.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[NLMSG_HDRLEN..]
    }

    /// The errno of an NLMSG_ERROR (0 for an ACK); EPROTO when the message is cut short.
    pub fn error_code(&self) -> i32 {
        self.payload()
            .get(0..4)
            .map(|b| -i32::from_ne_bytes(b.try_into().unwrap()))
            .unwrap_or(libc::EPROTO)
    }
}

/// The messages of one received buffer, in order; a truncated tail is dropped.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Msg<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let hdr = buf.get(at..at + NLMSG_HDRLEN)?;
        let len = u32::from_ne_bytes(hdr[0..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            return None;
        }
        let m = Msg {
            ty: u16::from_ne_bytes(hdr[4..6].try_into().unwrap()),
            flags: u16::from_ne_bytes(hdr[6..8].try_into().unwrap()),
            seq: u32::from_ne_bytes(hdr[8..12].try_into().unwrap()),
            bytes: &buf[at..at + len],
        };
        at += (len + 3) & !3;
        Some(m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut m = (len as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&0x300u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize((len + 3) & !3, 0);
        m
    }

    #[test]
    fn messages_are_split_aligned_and_a_cut_tail_is_dropped() {
        let mut buf = msg(20, 1, &[1, 2, 3]);
        buf.extend(msg(NLMSG_ERROR, 2, &(-libc::EPERM).to_ne_bytes()));
        buf.extend(msg(NLMSG_DONE, 3, &[0; 4]));
        buf.extend_from_slice(&[40, 0, 0, 0, 3, 0]);
        let m: Vec<Msg> = messages(&buf).collect();
        assert_eq!(
            m.iter().map(|m| (m.ty, m.seq)).collect::<Vec<_>>(),
            [(20, 1), (2, 2), (3, 3)]
        );
        assert_eq!(m[0].payload(), &[1, 2, 3]);
        assert_eq!(m[0].flags, 0x300);
        assert_eq!(m[1].error_code(), libc::EPERM);
        assert_eq!(msg(NLMSG_ERROR, 4, &[]).len(), 16);
        let short = msg(NLMSG_ERROR, 4, &[]);
        assert_eq!(messages(&short).next().unwrap().error_code(), libc::EPROTO);
    }
}
