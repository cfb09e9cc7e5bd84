//! grant / revoke / status / refresh / restore as paired transactions.
use std::ffi::OsString;

pub fn main_with_args(_args: impl IntoIterator<Item = OsString>) -> i32 {
    0
}
