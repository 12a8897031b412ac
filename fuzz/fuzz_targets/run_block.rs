//! The run-file block decoders **behind** authentication, on arbitrary plaintext.
//!
//! Input: `mode (u8) || bytes`. Mode `m % 8`: 0 data block (`decode_data_block`), 1 an
//! LZ4 body (`decode_block_body`, the data-block size limit) whose output, if any, is
//! decoded as a data block, 2 index block, 3 filter block, 4 meta block (version 3's,
//! whose tail is the partition directory, else version 2's; `decode_run_block`), 5..7
//! the same bytes as every kind at once.
//!
//! Asserted: never panics; whatever decodes re-encodes to exactly the bytes it was
//! decoded from (`decode_run_block`; for data blocks also by an independent encoder
//! written from `docs/FORMAT.md`); a decoded data block is non-empty, strictly ordered
//! by `(key ascending, LSN descending)`, has empty tombstone values, and `seek` finds
//! each entry at its own position and the first entry of each key at `Lsn::MAX`; LZ4
//! output is exactly the declared size and within the limit.
#![no_main]
use aedb_checkpoint::{
    BlockKind, Compression, DataBlock, EntryKind, MAX_DATA_BLOCK_LEN, decode_block_body,
    decode_data_block, decode_run_block,
};
use aedb_types::Lsn;
use libfuzzer_sys::fuzz_target;

/// Encodes a data block from its entries, independently of the library (FORMAT.md).
fn encode(block: &DataBlock) -> Vec<u8> {
    let mut out = (block.len() as u32).to_le_bytes().to_vec();
    for i in 0..block.len() {
        let e = block.entry(i);
        out.extend_from_slice(&(e.key.len() as u16).to_le_bytes());
        out.extend_from_slice(e.key);
        out.extend_from_slice(&e.lsn.get().to_le_bytes());
        out.push(match e.kind {
            EntryKind::Put => 1,
            EntryKind::Delete => 2,
        });
        out.extend_from_slice(&(e.value.len() as u32).to_le_bytes());
        out.extend_from_slice(e.value);
    }
    out
}

fn data_block(bytes: &[u8]) {
    let Ok(block) = decode_data_block(bytes) else {
        assert!(decode_run_block(BlockKind::Data, bytes).is_err());
        return;
    };
    assert!(!block.is_empty());
    assert_eq!(block.plaintext_len(), bytes.len());
    assert!(encode(&block) == bytes, "data block is not canonical");
    assert!(
        decode_run_block(BlockKind::Data, bytes).expect("decodes") == bytes,
        "library re-encoding differs"
    );
    for i in 0..block.len() {
        let e = block.entry(i);
        if e.kind == EntryKind::Delete {
            assert!(e.value.is_empty());
        }
        if i > 0 {
            let p = block.entry(i - 1);
            assert!(p.key < e.key || (p.key == e.key && p.lsn > e.lsn), "order");
        }
        assert_eq!(block.seek(e.key, e.lsn), i);
        let first = (0..=i)
            .find(|&j| block.entry(j).key == e.key)
            .expect("self");
        assert_eq!(block.seek(e.key, Lsn::MAX), first);
    }
}

fn other(kind: BlockKind, bytes: &[u8]) {
    if let Ok(again) = decode_run_block(kind, bytes) {
        assert!(again == bytes, "{kind} block is not canonical");
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, bytes @ ..] = data else {
        return;
    };
    match mode % 8 {
        0 => data_block(bytes),
        1 => {
            if let Ok(plain) = decode_block_body(Compression::Lz4, bytes, MAX_DATA_BLOCK_LEN) {
                let declared = u32::from_le_bytes(bytes[..4].try_into().expect("prefix"));
                assert_eq!(plain.len(), declared as usize);
                assert!(plain.len() <= MAX_DATA_BLOCK_LEN);
                data_block(&plain);
            }
        }
        2 => other(BlockKind::Index, bytes),
        3 => other(BlockKind::Filter, bytes),
        4 => other(BlockKind::Meta, bytes),
        _ => {
            data_block(bytes);
            for kind in [BlockKind::Index, BlockKind::Filter, BlockKind::Meta] {
                other(kind, bytes);
            }
        }
    }
});
