//! `scan_segment` (the recovery reader over a whole mapped segment) on arbitrary
//! bytes, as a last and as a sealed segment: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for is_last in [true, false] {
        let mut frames = 0u64;
        let _ = aedb_wal::scan_segment::<()>(data, is_last, |_frame| {
            frames += 1;
            Ok(())
        });
    }
});
