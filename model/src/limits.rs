//! Size limits of the data model and the typed error for exceeding them.
//!
//! The limits are part of the on-disk contract: decoders reject records that
//! exceed them, so raising one is a format change.

/// Longest KV key, in bytes. Keys are also at least one byte long.
pub const MAX_KV_KEY_LEN: usize = 4096;

/// Largest KV value, in bytes (16 MiB). Empty values are allowed.
pub const MAX_KV_VALUE_LEN: usize = 16 * 1024 * 1024;

/// Largest `Text` or `Bytes` cell in a table row, in bytes (16 MiB).
pub const MAX_CELL_LEN: usize = MAX_KV_VALUE_LEN;

/// Longest encoded primary key, in bytes (the same bound as a KV key).
pub const MAX_PRIMARY_KEY_LEN: usize = MAX_KV_KEY_LEN;

/// Longest idempotency key, in bytes. Keys are also at least one byte long.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// Most columns a table schema may have.
pub const MAX_COLUMNS: usize = 1024;

/// Most columns a primary key may have.
pub const MAX_PRIMARY_KEY_COLUMNS: usize = 32;

/// Longest stored message of a recorded rejection, in bytes (longer ones are cut
/// at a character boundary).
pub const MAX_REJECTION_MESSAGE_LEN: usize = 1024;

/// A byte string is outside the size limits of the model.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// KV keys must not be empty.
    #[error("KV key is empty; keys are 1..={MAX_KV_KEY_LEN} bytes")]
    EmptyKey,
    /// The KV key is longer than [`MAX_KV_KEY_LEN`].
    #[error("KV key is {len} bytes; the maximum is {MAX_KV_KEY_LEN}")]
    KeyTooLong {
        /// Length of the rejected key.
        len: usize,
    },
    /// The KV value is larger than [`MAX_KV_VALUE_LEN`].
    #[error("KV value is {len} bytes; the maximum is {MAX_KV_VALUE_LEN} (16 MiB)")]
    ValueTooLarge {
        /// Length of the rejected value.
        len: usize,
    },
    /// Idempotency keys must not be empty.
    #[error("idempotency key is empty; keys are 1..={MAX_IDEMPOTENCY_KEY_LEN} bytes")]
    EmptyIdempotencyKey,
    /// The idempotency key is longer than [`MAX_IDEMPOTENCY_KEY_LEN`].
    #[error("idempotency key is {len} bytes; the maximum is {MAX_IDEMPOTENCY_KEY_LEN}")]
    IdempotencyKeyTooLong {
        /// Length of the rejected key.
        len: usize,
    },
}
