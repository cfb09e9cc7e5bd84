//! A line diff for `--dry-run`: removed lines as `-N: text` (old numbering), added lines as
//! `+N: text` (new numbering). Myers' O(ND) algorithm: the edits touch a handful of lines, so D
//! stays small however long the file is.

/// Render the difference between two versions of the keys file.
pub fn diff(before: &[u8], after: &[u8]) -> String {
    let a = lines(before);
    let b = lines(after);
    let mut out = String::new();
    for op in script(&a, &b) {
        let (sign, n, text) = match op {
            Op::Del(i) => ('-', i + 1, a[i]),
            Op::Add(j) => ('+', j + 1, b[j]),
        };
        out.push_str(&format!("{sign}{n}: {}\n", show(text)));
    }
    out
}

/// Lines with their terminator, so a line that only gains a final newline shows as changed.
fn lines(s: &[u8]) -> Vec<&[u8]> {
    s.split_inclusive(|&b| b == b'\n').collect()
}

/// Printable: invalid UTF-8 and control characters (a CR, a NUL) escaped, the `\n` dropped, a
/// missing final newline said so.
fn show(line: &[u8]) -> String {
    let (body, nl) = match line.strip_suffix(b"\n") {
        Some(b) => (b, true),
        None => (line, false),
    };
    let mut s = String::new();
    for chunk in body.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() && c != '\t' {
                s.push_str(&c.escape_default().to_string());
            } else {
                s.push(c);
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    if !nl {
        s.push_str("  (no newline at end of file)");
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Del(usize),
    Add(usize),
}

/// The edit script (deletions and insertions in file order).
fn script(a: &[&[u8]], b: &[&[u8]]) -> Vec<Op> {
    // Common head and tail cost nothing and keep the search small.
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a_mid, b_mid) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    myers(a_mid, b_mid)
        .into_iter()
        .map(|op| match op {
            Op::Del(i) => Op::Del(i + head),
            Op::Add(j) => Op::Add(j + head),
        })
        .collect()
}

fn myers(a: &[&[u8]], b: &[&[u8]]) -> Vec<Op> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = (n + m) as usize;
    let off = max as isize;
    let mut v = vec![0isize; 2 * max + 2];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    // Each saved frontier costs 2(N+M) words: past a budget, show the middle as replaced.
    let budget = (4_000_000 / (2 * max + 2)).max(1);
    'outer: for d in 0..=max as isize {
        if trace.len() > budget {
            let mut ops: Vec<Op> = (0..a.len()).map(Op::Del).collect();
            ops.extend((0..b.len()).map(Op::Add));
            return ops;
        }
        trace.push(v.clone());
        let mut k = -d;
        while k <= d {
            let idx = (k + off) as usize;
            let mut x = if k == -d || (k != d && v[idx - 1] < v[idx + 1]) {
                v[idx + 1]
            } else {
                v[idx - 1] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[idx] = x;
            if x >= n && y >= m {
                break 'outer;
            }
            k += 2;
        }
    }
    // Walk back through the saved frontiers.
    let mut ops = Vec::new();
    let (mut x, mut y) = (n, m);
    for d in (1..trace.len() as isize).rev() {
        let v = &trace[d as usize];
        let k = x - y;
        let idx = (k + off) as usize;
        let prev_k = if k == -d || (k != d && v[idx - 1] < v[idx + 1]) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = v[(prev_k + off) as usize];
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
        }
        if x == prev_x {
            ops.push(Op::Add(prev_y as usize));
        } else {
            ops.push(Op::Del(prev_x as usize));
        }
        x = prev_x;
        y = prev_y;
    }
    ops.reverse();
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_changed_lines_with_numbers() {
        let d = diff(b"a\nb\nc\nd\n", b"a\n#b\nc\nd\ne\n");
        assert_eq!(d, "-2: b\n+2: #b\n+5: e\n");
    }

    #[test]
    fn no_change_no_output_and_escapes() {
        assert_eq!(diff(b"x\r\n", b"x\r\n"), "");
        assert_eq!(
            diff(b"x", b"x\n"),
            "-1: x  (no newline at end of file)\n+1: x\n"
        );
        assert_eq!(diff(b"", b"\xff\0\n"), "+1: \\xff\\u{0}\n");
    }

    #[test]
    fn script_rebuilds_the_new_file() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a\n", b""),
            (b"a\nb\nc\n", b"c\nb\na\n"),
            (b"x\ny\nz\n", b"y\nq\nz\nw\n"),
        ];
        for (a, b) in cases {
            let (la, lb) = (lines(a), lines(b));
            let ops = script(&la, &lb);
            // Apply: keep undeleted old lines, insert added ones at their new positions.
            let dels: Vec<usize> = ops
                .iter()
                .filter_map(|o| match o {
                    Op::Del(i) => Some(*i),
                    _ => None,
                })
                .collect();
            let kept: Vec<&[u8]> = la
                .iter()
                .enumerate()
                .filter(|(i, _)| !dels.contains(i))
                .map(|(_, l)| *l)
                .collect();
            let mut rebuilt = kept.clone();
            for o in &ops {
                if let Op::Add(j) = o {
                    rebuilt.insert(*j, lb[*j]);
                }
            }
            assert_eq!(rebuilt, lb);
        }
    }
}
