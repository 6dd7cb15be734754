//! Content-hash ids: the same content always gives the same id. Action ids double as
//! EC2 client tokens, plan ids key the journal, fingerprints bind plans to what made them.

use sha2::{Digest, Sha256};

/// The sha256 of `bytes`, as 64 hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `PREFIX-` and the first `len` hex digits of the sha256 of `seed`.
pub fn stable_id(prefix: &str, seed: &[u8], len: usize) -> String {
    prefixed(prefix, &sha256_hex(seed), len)
}

/// `prefix-` and the first `len` hex digits of `digest`.
fn prefixed(prefix: &str, digest: &str, len: usize) -> String {
    format!("{prefix}-{}", &digest[..len.min(digest.len())])
}

/// `stable_id` of `value`'s JSON text, hashed as it is written rather than held whole
/// (a 1,000,000-image plan's actions are ~0.8 GB of it).
pub fn stable_id_of_json<T: serde::Serialize + ?Sized>(prefix: &str, value: &T, len: usize) -> String {
    let mut hasher = Sha256::new();
    // Writing into a hasher cannot fail; serializing a plan's types cannot either.
    let _ = serde_json::to_writer(&mut hasher, value);
    prefixed(prefix, &hex::encode(hasher.finalize()), len)
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

    #[test]
    fn an_id_of_json_is_the_id_of_its_text() {
        let value = serde_json::json!([{"op": "deregister", "image_id": "ami-1"}, {"op": "tag", "tags": {"a": "b"}}]);
        let text = serde_json::to_vec(&value).unwrap();
        assert_eq!(super::stable_id_of_json("plan", &value, 20), super::stable_id("plan", &text, 20));
    }
}
