//! vsa connector.

pub mod wire;
