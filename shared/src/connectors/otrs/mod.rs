//! otrs connector.

pub mod wire;
