//! The vault file's decoder: any bytes (a truncated, corrupted or foreign file) decode or
//! give an error; what decodes encodes back to the same bytes. The input is tried as it is
//! and with its SHA-256 appended, so the fuzzer gets past the checksum to the layout.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use zocalo_llm::vault::format::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let _ = decode(data);
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&Sha256::digest(data));
    if let Ok(file) = decode(&sealed) {
        assert_eq!(encode(&file), sealed, "decode then encode changed the bytes");
    }
});
