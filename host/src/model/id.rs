//! Content-hash ids: the same content always gives the same id. Action ids double as
//! EC2 client tokens, plan ids key the journal, fingerprints bind plans to what made them.

use sha2::{Digest, Sha256};

/// The sha256 of `bytes`, as 64 hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `PREFIX-` and the first `len` hex digits of the sha256 of `seed`.
pub fn stable_id(prefix: &str, seed: &[u8], len: usize) -> String {
    let digest = sha256_hex(seed);
    format!("{prefix}-{}", &digest[..len.min(digest.len())])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_seed_gives_the_same_id_and_another_seed_another() {
        let a = super::stable_id("act", b"111111111111/us-east-1/ami-1/deregister", 20);
        assert_eq!(a, super::stable_id("act", b"111111111111/us-east-1/ami-1/deregister", 20));
        assert_ne!(a, super::stable_id("act", b"111111111111/us-east-1/ami-2/deregister", 20));
        assert_eq!(a.len(), "act-".len() + 20);
        assert_eq!(super::sha256_hex(b"").len(), 64);
    }
}
