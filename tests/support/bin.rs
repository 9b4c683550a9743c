//! Running the built binary in tests: always with the shared model (never
//! fetched from the network) and a vector cache in the temporary directory.
#![allow(dead_code)] // each test crate uses a part of it

use std::path::{Path, PathBuf};
use std::process::Command;

/// The model directory: `FAQBOT_MODEL` (relative to the repository root), or
/// the shared copy CI provides beside the checkout.
pub fn model_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("FAQBOT_MODEL") {
        Some(dir) => root.join(dir),
        None => root.join("../shared/models/all-MiniLM-L6-v2"),
    }
}

/// A vector cache shared by the test runs, inside the temporary directory.
pub fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("faqbot-test-vectors")
}

/// `faqbot` with the model and the cache set, and nothing else from the environment's FAQBOT_*.
pub fn faqbot() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_faqbot"));
    command
        .env_remove("FAQBOT_KNOWLEDGE")
        .env("FAQBOT_MODEL", model_dir())
        .env("FAQBOT_CACHE", cache_dir())
        // Never reach a real model host from a test, whatever happens.
        .env("FAQBOT_MODEL_HUB_URL", "http://127.0.0.1:9")
        .env("FAQBOT_MODEL_INDEX_URL", "http://127.0.0.1:9");
    command
}

/// Copies a directory tree (e.g. the shipped knowledge base into a
/// temporary directory a test may change).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for item in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(item.file_name());
        if item.path().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), target).expect("copy");
        }
    }
}
