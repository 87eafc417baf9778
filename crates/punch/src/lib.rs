//! punch networking.
#![deny(missing_docs)]
