//! How lists read in messages, for every module that words one (the domain's errors and
//! warnings as much as the report).

/// `a, b, c`: how lists (addresses, ports) read in messages.
pub fn join<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
