//! `aedb_wal::decode_frame` on arbitrary bytes: never panics; anything that decodes
//! re-encodes to exactly the bytes it was decoded from.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = aedb_wal::decode_frame(data) {
        let mut out = Vec::new();
        let n = aedb_wal::encode_frame(frame.lsn, frame.kind, frame.payload, &mut out)
            .expect("a decoded payload is within the limit");
        assert_eq!(n, frame.encoded_len);
        assert_eq!(&out[..], &data[..frame.encoded_len]);
    }
});
