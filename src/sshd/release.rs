//! Which OpenSSH release the installed sshd is: the form of `expiry-time` depends on it. Read from
//! the release string compiled into the binary, so that a grant runs no other program; `sshd -V`
//! only when the binary does not tell.
use std::io::Read;

use super::test_mode;

const PREFIX: &[u8] = b"OpenSSH_";
/// Bytes of one window carried into the next: longer than any release string, so a string cut by
/// the window's end is seen whole in the next one.
const OVERLAP: usize = 64;
const WINDOW: usize = 64 * 1024;

/// The installed /usr/sbin/sshd's version: (major, minor), None when absent. Learned at most
/// once per process, and only by the callers that need it (`expiry-time`'s format depends on
/// it): from the release string compiled into the binary when it holds exactly one, otherwise
/// from `sshd -V`.
pub fn version() -> Option<(u32, u32)> {
    static VERSION: std::sync::OnceLock<Option<(u32, u32)>> = std::sync::OnceLock::new();
    *VERSION.get_or_init(|| {
        std::fs::File::open(test_mode::SSHD)
            .ok()
            .and_then(|f| version_in_elf(f).ok())
            .flatten()
            .or_else(version_by_running)
    })
}

/// The release string is a constant, in `.rodata` (a sixth of the binary): that section when the
/// ELF headers name it, the whole file when they do not.
fn version_in_elf(mut file: std::fs::File) -> std::io::Result<Option<(u32, u32)>> {
    use std::io::{Seek, SeekFrom};
    if let Some((offset, len)) = rodata(&mut file)? {
        file.seek(SeekFrom::Start(offset))?;
        if let Some(v) = version_in_file((&mut file).take(len))? {
            return Ok(Some(v));
        }
    }
    file.seek(SeekFrom::Start(0))?;
    version_in_file(file)
}

/// Where `.rodata` lies in a 64-bit little-endian ELF file (elf(5): the section headers at
/// `e_shoff`, their names in the section `e_shstrndx`); `None` for anything else.
fn rodata(file: &mut (impl Read + std::io::Seek)) -> std::io::Result<Option<(u64, u64)>> {
    use std::io::SeekFrom;
    let mut ehdr = [0u8; 64];
    if file.read_exact(&mut ehdr).is_err() || &ehdr[..6] != b"\x7fELF\x02\x01" {
        return Ok(None);
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as usize;
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let (shoff, shentsize) = (u64_at(&ehdr, 0x28), u16_at(&ehdr, 0x3A));
    let (shnum, shstrndx) = (u16_at(&ehdr, 0x3C), u16_at(&ehdr, 0x3E));
    if shentsize != 64 || shnum == 0 || shnum > 512 || shstrndx >= shnum {
        return Ok(None);
    }
    let mut shdrs = vec![0u8; shnum * 64];
    file.seek(SeekFrom::Start(shoff))?;
    if file.read_exact(&mut shdrs).is_err() {
        return Ok(None);
    }
    // sh_name at 0, sh_offset at 0x18, sh_size at 0x20 of each 64-byte header.
    let section = |i: usize| {
        let h = &shdrs[i * 64..i * 64 + 64];
        (
            u32::from_le_bytes(h[0..4].try_into().unwrap()) as usize,
            u64_at(h, 0x18),
            u64_at(h, 0x20),
        )
    };
    let (_, names_at, names_len) = section(shstrndx);
    if names_len > 64 * 1024 {
        return Ok(None);
    }
    let mut names = vec![0u8; names_len as usize];
    file.seek(SeekFrom::Start(names_at))?;
    if file.read_exact(&mut names).is_err() {
        return Ok(None);
    }
    Ok((0..shnum).map(section).find_map(|(name, offset, len)| {
        (names.get(name..name + 8) == Some(b".rodata\0")).then_some((offset, len))
    }))
}

/// `sshd -V`, which prints the release on stderr.
fn version_by_running() -> Option<(u32, u32)> {
    let out = std::process::Command::new(test_mode::SSHD)
        .arg("-V")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    parse_version(&text)
}

/// OpenSSH compiles SSH_RELEASE (version.h: `SSH_VERSION SSH_PORTABLE`, e.g. `OpenSSH_9.2p1`)
/// into sshd as a NUL-terminated string of its own; the compat patterns (`OpenSSH_7.4*`) and
/// format strings (`OpenSSH_9.2 %s,`) beside it are not of that exact shape. One distinct
/// release string is the version; none or several (a patched build) is no answer.
pub fn version_in_binary(bin: &[u8]) -> Option<(u32, u32)> {
    let mut found = Found::default();
    scan(bin, Window::WHOLE, &mut found);
    found.answer()
}

/// [`version_in_binary`] of a file read through one small window: the binary is over a
/// megabyte, and reading it whole into fresh memory was a tenth of a grant's time.
fn version_in_file(mut file: impl Read) -> std::io::Result<Option<(u32, u32)>> {
    let mut buf = vec![0u8; WINDOW + OVERLAP];
    let mut found = Found::default();
    let (mut filled, mut starts_file) = (0, true);
    loop {
        let n = file.read(&mut buf[filled..])?;
        let end = filled + n;
        let at_eof = n == 0;
        scan(
            &buf[..end],
            Window {
                starts_file,
                at_eof,
            },
            &mut found,
        );
        if at_eof || found.conflict {
            return Ok(found.answer());
        }
        let keep = end.min(OVERLAP);
        buf.copy_within(end - keep..end, 0);
        (filled, starts_file) = (keep, false);
    }
}

/// Where a window sits in the file: the byte before its first one is unknown unless it starts
/// the file, and a string running to its end is cut unless the file ends there.
#[derive(Clone, Copy)]
struct Window {
    starts_file: bool,
    at_eof: bool,
}

impl Window {
    const WHOLE: Window = Window {
        starts_file: true,
        at_eof: true,
    };
}

#[derive(Default)]
struct Found {
    version: Option<(u32, u32)>,
    conflict: bool,
}

impl Found {
    fn add(&mut self, v: (u32, u32)) {
        match self.version {
            Some(f) if f != v => self.conflict = true,
            _ => self.version = Some(v),
        }
    }

    fn answer(&self) -> Option<(u32, u32)> {
        self.version.filter(|_| !self.conflict)
    }
}

/// The release strings of one window, found by a vectorised search for the prefix (a
/// byte-wise split on NULs was most of a grant's CPU time). A string seen twice because windows
/// overlap counts once: only a second, different release is a conflict.
fn scan(w: &[u8], place: Window, found: &mut Found) {
    for at in memchr::memmem::find_iter(w, PREFIX) {
        let starts_string = if at == 0 {
            place.starts_file
        } else {
            w[at - 1] == 0
        };
        if !starts_string {
            continue;
        }
        let rest = &w[at + PREFIX.len()..];
        let len = match memchr::memchr(0, rest) {
            Some(len) => len,
            None if place.at_eof => rest.len(),
            // Cut by the window: the next one, which starts OVERLAP bytes earlier, has it.
            None => continue,
        };
        if let Some(v) = std::str::from_utf8(&rest[..len])
            .ok()
            .and_then(release_shape)
        {
            found.add(v);
        }
    }
}

/// `9.2p1` → (9, 2); anything else (a `*`, a space, a missing `p`) is not a release string.
fn release_shape(s: &str) -> Option<(u32, u32)> {
    let (version, portable) = s.split_once('p')?;
    let (major, minor) = version.split_once('.')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !(digits(major) && digits(minor) && digits(portable)) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// `OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL ...` → (9, 2).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("OpenSSH_")? + "OpenSSH_".len()..];
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0"),
            Some((9, 2))
        );
        assert_eq!(parse_version("OpenSSH_10.0, LibreSSL"), Some((10, 0)));
        assert_eq!(parse_version("dropbear"), None);
    }

    #[test]
    fn the_release_string_compiled_into_sshd_is_its_version() {
        let bin = b"\0OpenSSH_7.4*\0OpenSSH_9.2 %s,\0OpenSSH_9.2p1\0x\0OpenSSH_9.2p1\0";
        assert_eq!(version_in_binary(bin), Some((9, 2)));
        assert_eq!(version_in_binary(b"\0OpenSSH_2*,OpenSSH_3*\0"), None);
        assert_eq!(version_in_binary(b"OpenSSH_8.7p1\0OpenSSH_9.0p1\0"), None);
        // The installed one, when there is one, agrees with `sshd -V`.
        if let Ok(bin) = std::fs::read(test_mode::SSHD) {
            assert_eq!(version_in_binary(&bin), version_by_running());
            assert_eq!(version_in_file(&bin[..]).unwrap(), version_by_running());
            let file = std::fs::File::open(test_mode::SSHD).unwrap();
            assert_eq!(version_in_elf(file).unwrap(), version_by_running());
            let mut file = std::fs::File::open(test_mode::SSHD).unwrap();
            let (offset, len) = rodata(&mut file)
                .unwrap()
                .expect("sshd is an ELF with .rodata");
            assert!(len > 0 && offset + len <= bin.len() as u64 && len < bin.len() as u64 / 2);
        }
    }

    #[test]
    fn a_file_read_window_by_window_gives_the_same_answer() {
        // A release string at every offset around the windows' edges, in a file of several
        // windows: each is found, and a second release anywhere is a conflict.
        for at in (WINDOW - 80..WINDOW + 80).chain([0, 1, 2 * WINDOW - 10]) {
            let mut bin = vec![0xAAu8; 3 * WINDOW];
            bin[at.saturating_sub(1)] = 0;
            let s = b"OpenSSH_9.2p1\0";
            let start = if at == 0 { 0 } else { at };
            bin[start..start + s.len()].copy_from_slice(s);
            assert_eq!(version_in_binary(&bin), Some((9, 2)), "at {at}");
            assert_eq!(version_in_file(&bin[..]).unwrap(), Some((9, 2)), "at {at}");
            let other = b"\0OpenSSH_8.4p1\0";
            let o = (at + WINDOW + 7) % (3 * WINDOW - 40) + 20;
            if o + other.len() < start || o > start + s.len() {
                bin[o..o + other.len()].copy_from_slice(other);
                assert_eq!(
                    version_in_file(&bin[..]).unwrap(),
                    None,
                    "at {at}, other at {o}"
                );
            }
        }
        // A string that runs to the end of the file ends there.
        assert_eq!(
            version_in_file(&b"x\0OpenSSH_9.6p1"[..]).unwrap(),
            Some((9, 6))
        );
        assert_eq!(version_in_file(&b""[..]).unwrap(), None);
    }

    #[test]
    fn a_reader_that_returns_little_at_a_time_changes_nothing() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = out.len().min(self.0.len()).min(3);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let bin = b"\x7fELF\0OpenSSH_7.4*\0OpenSSH_9.2 %s,\0OpenSSH_9.2p1\0";
        assert_eq!(version_in_file(Trickle(bin)).unwrap(), Some((9, 2)));
    }

    #[test]
    fn what_is_not_a_64_bit_elf_is_scanned_whole() {
        let mut f = std::io::Cursor::new(b"\0OpenSSH_9.2p1\0".to_vec());
        assert_eq!(rodata(&mut f).unwrap(), None);
        let mut elf32 = b"\x7fELF\x01\x01".to_vec();
        elf32.resize(200, 0);
        assert_eq!(rodata(&mut std::io::Cursor::new(elf32)).unwrap(), None);
    }
}
