//! A minimal DNS client (RFC 1035 §4): one A or AAAA question over UDP, the answer's addresses.
//! Only for checking that the test's dnsmasq answers; the tool has its own resolver.
use std::io::{Error, ErrorKind, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

/// Sends one query to `server` and returns the addresses of the answer records of the asked type.
pub fn query(server: SocketAddr, name: &str, v6: bool) -> Result<Vec<IpAddr>> {
    let qtype = if v6 { TYPE_AAAA } else { TYPE_A };
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()
    .unwrap();
    let sock = UdpSocket::bind(bind)?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    sock.connect(server)?;
    sock.send(&build_query(id, name, qtype))?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf)?;
    parse_answer(&buf[..n], id, qtype)
}

fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD: a forwarder would recurse; dnsmasq answers itself.
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT 1
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // class IN
    q
}

fn bad(what: &str) -> Error {
    Error::new(ErrorKind::InvalidData, format!("DNS answer: {what}"))
}

fn parse_answer(msg: &[u8], id: u16, qtype: u16) -> Result<Vec<IpAddr>> {
    let u16_at = |i: usize| -> Result<u16> {
        msg.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| bad("truncated"))
    };
    if u16_at(0)? != id {
        return Err(bad("wrong id"));
    }
    let rcode = u16_at(2)? & 0x000f;
    if rcode != 0 {
        return Err(bad(&format!("rcode {rcode}")));
    }
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(msg, i)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        i = skip_name(msg, i)?;
        let (rtype, len) = (u16_at(i)?, u16_at(i + 8)? as usize);
        let data = msg
            .get(i + 10..i + 10 + len)
            .ok_or_else(|| bad("truncated"))?;
        match (rtype, len) {
            (TYPE_A, 4) if rtype == qtype => out.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (TYPE_AAAA, 16) if rtype == qtype => {
                let b: [u8; 16] = data.try_into().unwrap();
                out.push(IpAddr::V6(Ipv6Addr::from(b)))
            }
            _ => {}
        }
        i += 10 + len;
    }
    Ok(out)
}

/// Past a name: labels up to the zero byte, or a compression pointer (two bytes, ends the name).
fn skip_name(msg: &[u8], mut i: usize) -> Result<usize> {
    for _ in 0..128 {
        let len = *msg.get(i).ok_or_else(|| bad("truncated name"))?;
        match len {
            0 => return Ok(i + 1),
            l if l & 0xc0 == 0xc0 => return Ok(i + 2),
            l => i += 1 + l as usize,
        }
    }
    Err(bad("name too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_compressed_answer() {
        let mut msg = build_query(7, "cache-ng.ovh.net", TYPE_A);
        msg[2] = 0x81;
        msg[3] = 0x80;
        msg[7] = 1; // ANCOUNT 1
        msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100, 2]);
        let got = parse_answer(&msg, 7, TYPE_A).unwrap();
        assert_eq!(got, vec!["198.51.100.2".parse::<IpAddr>().unwrap()]);
        assert!(parse_answer(&msg, 8, TYPE_A).is_err());
        assert!(parse_answer(&msg[..msg.len() - 1], 7, TYPE_A).is_err());
    }
}
