//! aedb
