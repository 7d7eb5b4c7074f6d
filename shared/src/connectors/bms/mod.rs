//! bms connector.

pub mod wire;
