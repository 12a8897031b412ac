//! The manifest, whole files and single record bodies, on arbitrary bytes, under the
//! golden manifest key (so the golden and generated manifests in the seed corpus
//! verify). Never panics, and:
//!
//! * `ManifestRecord::decode`: anything that decodes re-encodes to the same bytes;
//! * `verify_manifest_bytes`: anything that verifies is canonical and self-consistent
//!   (`aedb_fuzz::check_verified_manifest`: the library's encoders rebuild the verified
//!   prefix byte for byte, a torn tail is really torn, the live state is the fold of the
//!   records, and compacting it restates the same live set);
//! * `manifest::decode_frame` of the bytes after the golden header: a frame that decodes
//!   re-encodes (`encode_frame`) to the same bytes and MAC.
#![no_main]
use aedb_manifest::file::{decode_frame, encode_frame, encode_manifest_header};
use aedb_manifest::{ManifestRecord, verify_manifest_bytes};
use aedb_fuzz::{FUZZ_DB, check_verified_manifest, manifest_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = ManifestRecord::decode(data) {
        assert_eq!(
            record.encode().as_deref(),
            Ok(data),
            "record body is not canonical"
        );
    }
    let key = manifest_key();
    if let Ok(verified) = verify_manifest_bytes(std::path::Path::new("MANIFEST"), data, &key) {
        check_verified_manifest(data, &key, &verified);
    }
    let header = encode_manifest_header(FUZZ_DB, &key);
    let frame = data.strip_prefix(&header[..]).unwrap_or(data);
    let mut prev = [0u8; 32];
    prev.copy_from_slice(&header[32..]);
    if let Ok((record, mac)) = decode_frame(frame, &prev, &key) {
        let (again, again_mac) =
            encode_frame(&key, &prev, &record).expect("decoded record encodes");
        assert_eq!(
            (&again[..], again_mac),
            (frame, mac),
            "frame is not canonical"
        );
    }
});
