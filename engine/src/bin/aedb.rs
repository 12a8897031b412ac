//! The `aedb` command-line tool.
fn main() {}
