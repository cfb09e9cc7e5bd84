//! The buffer requests are written into and answers read from: netlink wants every `nlmsghdr`
//! 4-byte aligned, and libnftnl writes through raw pointers, so the storage is `u64` words.
/// A growable buffer of netlink messages, 8-byte aligned as `nlmsghdr` requires.
#[derive(Default)]
pub struct MsgBuf {
    words: Vec<u64>,
    len: usize,
}

impl MsgBuf {
    pub fn new() -> MsgBuf {
        MsgBuf::default()
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds at least `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    /// Append raw bytes (the hand-written batch begin/end messages).
    pub fn push_bytes(&mut self, data: &[u8]) {
        let at = self.reserve(data.len());
        self.tail_mut(at, data.len()).copy_from_slice(data);
        self.len = at + align4(data.len());
    }

    fn reserve(&mut self, extra: usize) -> usize {
        let need = self.len + extra + 8;
        if self.words.len() * 8 < need {
            self.words.resize(need.div_ceil(8), 0);
        }
        self.len
    }

    fn tail_mut(&mut self, at: usize, n: usize) -> &mut [u8] {
        // SAFETY: `reserve` made room for `n` bytes from `at`.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>().add(at), n) }
    }

    /// Let `build` write one message at the end of the buffer, then keep `nlmsg_len` bytes.
    pub(super) fn write_with(&mut self, build: impl FnOnce(*mut libc::c_char)) {
        let max = nftnl::nft_nlmsg_maxsize() as usize;
        let at = self.reserve(max);
        self.tail_mut(at, max).fill(0);
        // SAFETY: the buffer has `max` zeroed bytes at `at`, the most libnftnl writes per
        // message; `at` is a multiple of 4 and the storage is 8-aligned.
        let ptr = unsafe { self.words.as_mut_ptr().cast::<u8>().add(at) };
        build(ptr.cast());
        let len = u32::from_ne_bytes(self.tail_mut(at, 4).try_into().unwrap()) as usize;
        // The callers keep every message far below the reservation (apply::ELEMS_PER_MSG);
        // past it, memory was already overwritten and nothing can be trusted.
        assert!(
            len <= max,
            "netlink message of {len} bytes overran its {max}-byte buffer"
        );
        self.len = at + align4(len);
    }
}

/// An aligned receive buffer seen as bytes, as `mnl::Socket::recv_raw` wants it.
pub fn words_as_bytes(words: &mut [u64]) -> &mut [u8] {
    let len = std::mem::size_of_val(words);
    // SAFETY: same allocation and lifetime; u8 has no invalid bit patterns.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) }
}

pub fn align4(n: usize) -> usize {
    (n + 3) & !3
}
