//! Ticket Bridge: turns provisioning tasks and security alerts into ITSM/PSA tickets, follows
//! them until a technician closes them, and reports completion upstream.
//!
//! Layers, lowest first; a module uses only its own layer or lower ones (`cargo xtask lint` checks
//! it): [`domain`] and [`render`] (pure model, state machine, templates) → [`config`] → [`store`]
//! and [`secrets`] → [`http`] (transport, with the call error and token types) → [`connectors`] →
//! [`mapping`] → [`engine`] (use cases over the traits) → `aws` (Lambda adapters).

#[cfg(any(feature = "dynamo", feature = "aws-secrets", feature = "eventbridge"))]
pub mod aws;
pub mod config;
pub mod connectors;
pub mod domain;
pub mod engine;
pub mod http;
pub mod mapping;
pub mod render;
pub mod secrets;
pub mod store;
