//! Versioned plugin state. Plugins encode state with [`encode`] and decode it with [`decode`];
//! the version travels beside the bytes (see `Plugin::STATE_VERSION`), so a new plugin version can
//! migrate an old layout or refuse it with a reason the host shows.

use serde::{de::DeserializeOwned, Serialize};

/// Encode state as JSON: readable in snapshot files, tolerant of added fields with
/// `#[serde(default)]`.
pub fn encode<T: Serialize>(state: &T) -> Vec<u8> {
    serde_json::to_vec(state).expect("plugin state must be serialisable")
}

/// Decode state written by [`encode`], accepting only the listed versions.
pub fn decode<T: DeserializeOwned>(
    plugin: &str,
    version: u32,
    accepted: &[u32],
    data: &[u8],
) -> Result<T, String> {
    if !accepted.contains(&version) {
        return Err(format!(
            "{plugin} cannot read state version {version} (it reads {accepted:?})"
        ));
    }
    serde_json::from_slice(data).map_err(|e| format!("{plugin}: corrupt state: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let bytes = encode(&vec![1u32, 2, 3]);
        let back: Vec<u32> = decode("p", 2, &[1, 2], &bytes).unwrap();
        assert_eq!(back, vec![1, 2, 3]);
        let err = decode::<Vec<u32>>("p", 3, &[1, 2], &bytes).unwrap_err();
        assert!(err.contains("cannot read state version 3"), "{err}");
        let err = decode::<Vec<u32>>("p", 1, &[1], b"{").unwrap_err();
        assert!(err.contains("corrupt state"), "{err}");
    }
}
