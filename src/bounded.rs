//! Reading an input file with a bound. A file the tool reads is small by nature (a public key, a
//! configuration, the passwd file); one that is not — `--key-file /dev/zero`, a log pasted over a
//! configuration — must give a clear error, never fill the memory.
use std::io::{self, Read};
use std::path::Path;

/// A public key file (`--key-file`): one line is under 20 KiB even for the largest RSA key.
pub const KEY_FILE: u64 = 1 << 20;
/// A configuration file, the state file, the passwd and group files.
pub const CONFIG: u64 = 16 << 20;

/// Read at most `limit` bytes from `r`; more is an `InvalidData` error that says so.
pub fn read_from(mut r: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    r.by_ref().take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "larger than {}, more than such a file ever holds; check what it is",
                shown(limit)
            ),
        ));
    }
    Ok(bytes)
}

/// `std::fs::read` with a bound.
pub fn read(path: impl AsRef<Path>, limit: u64) -> io::Result<Vec<u8>> {
    read_from(std::fs::File::open(path)?, limit)
}

/// `std::fs::read_to_string` with a bound (invalid UTF-8 is an error, as there).
pub fn read_to_string(path: impl AsRef<Path>, limit: u64) -> io::Result<String> {
    String::from_utf8(read(path, limit)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()))
}

fn shown(limit: u64) -> String {
    if limit >= 1 << 20 {
        format!("{} MiB", limit >> 20)
    } else {
        format!("{} KiB", limit >> 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_source_stops_at_the_bound() {
        let e = read_from(io::repeat(0), 1024).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("larger than 1 KiB"), "{e}");
        assert_eq!(read_from(&b"abc"[..], 3).unwrap(), b"abc");
    }
}
