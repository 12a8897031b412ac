//! benches helpers
