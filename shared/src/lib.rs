//! Ticket Bridge: turns provisioning tasks and security alerts into ITSM/PSA tickets, follows
//! them until a technician closes them, and reports completion upstream.
//!
//! Layers: [`domain`] (pure model and state machine), [`engine`] (use cases over the [`store`],
//! [`secrets`] and [`connectors`] traits), adapters behind those traits, and [`config`].

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
