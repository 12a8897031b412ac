//! `State::decode_snapshot` (checkpoint payloads) on arbitrary bytes: never panics;
//! anything that decodes is canonical (see `aedb_fuzz::assert_snapshot_canonical`: the
//! current version re-encodes to the same bytes, older ones to the same state).
#![no_main]
use aedb_model::State;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = State::decode_snapshot(data) {
        aedb_fuzz::assert_snapshot_canonical(data, &state);
    }
});
