//! ninjaone connector.

pub mod wire;
