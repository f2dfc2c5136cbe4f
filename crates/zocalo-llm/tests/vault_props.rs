//! The vault decoder against arbitrary and mutated bytes: it never panics, and whatever it
//! accepts encodes back to the same bytes.

use proptest::prelude::*;
use zocalo_llm::vault::format::{decode, encode, Entry, Header, Kdf, KdfParams, VaultFile};

fn sample() -> Vec<u8> {
    encode(&VaultFile {
        header: Header {
            kdf: Kdf::Argon2id(KdfParams::default()),
            salt: [1; 16],
        },
        check_nonce: [2; 24],
        check: vec![3; 41],
        entries: vec![Entry {
            name: "openai".into(),
            nonce: [4; 24],
            ciphertext: vec![5; 50],
        }],
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(f) = decode(&bytes) {
            prop_assert_eq!(encode(&f), bytes);
        }
    }

    #[test]
    fn magic_prefixed_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"ZOCVAULT\x01".to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(f) = decode(&bytes) {
            prop_assert_eq!(encode(&f), bytes);
        }
    }

    #[test]
    fn mutated_vaults_are_rejected(at in 0usize..10_000, xor in 1u8..=255, cut in 0usize..10_000) {
        let good = sample();
        let mut b = good.clone();
        let i = at % b.len();
        b[i] ^= xor;
        prop_assert!(decode(&b).is_err());
        let n = cut % good.len();
        prop_assert!(decode(&good[..n]).is_err());
    }
}
