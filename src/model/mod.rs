//! The local sentence-embedding model: getting its files onto this machine, verified.

pub mod fetch;
