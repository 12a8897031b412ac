//! The decoders of the storage key space's entries as reads meet them in run files
//! (`aedb_model::fuzzing::stored_entry`: catalog entries, rows, idempotency records) on
//! arbitrary bytes: never panic, and anything that decodes re-encodes to the same bytes.
//! Input: one length byte, that many key bytes, the rest is the value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let (key, value) = rest.split_at(usize::from(len).min(rest.len()));
    aedb_model::fuzzing::stored_entry(key, value);
});
