//! `State::decode_snapshot` (checkpoint payloads) on arbitrary bytes: never panics;
//! anything that decodes re-encodes to the same bytes.
#![no_main]
use aedb_model::State;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = State::decode_snapshot(data) {
        assert_eq!(state.to_snapshot_bytes().expect("a decoded state is in memory"), data);
    }
});
