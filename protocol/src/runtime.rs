//! What a converter reports about the libtorch it loads (`yolots-converter runtime`).

use serde::{Deserialize, Serialize};

/// The libtorch version and the CUDA devices it can use, as one JSON object
/// (`{"libtorch":"2.11.0","cuda_devices":1}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeFacts {
    /// The version of the libtorch loaded by the converter (`None` when unknown).
    pub libtorch: Option<String>,
    /// CUDA devices libtorch can use (0 without a GPU or CUDA runtime).
    pub cuda_devices: usize,
    /// The converter honours a request's `test_fault` (built with the `test-hooks`
    /// feature); absent, and so false, from any release build.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test_hooks: bool,
}

/// Whether this build has the test hooks (the `test-hooks` feature).
pub const TEST_HOOKS: bool = cfg!(feature = "test-hooks");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_json() {
        let mut facts = RuntimeFacts {
            libtorch: Some("2.11.0".into()),
            cuda_devices: 2,
            test_hooks: false,
        };
        // Release builds say nothing of test hooks; a converter that has them says so.
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(json, r#"{"libtorch":"2.11.0","cuda_devices":2}"#);
        assert_eq!(serde_json::from_str::<RuntimeFacts>(&json).unwrap(), facts);
        facts.test_hooks = true;
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(
            json,
            r#"{"libtorch":"2.11.0","cuda_devices":2,"test_hooks":true}"#
        );
        assert_eq!(serde_json::from_str::<RuntimeFacts>(&json).unwrap(), facts);
    }
}
