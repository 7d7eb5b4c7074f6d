//! Stateful simulators of the ITSM/PSA APIs Ticket Bridge talks to, for contract tests,
//! end-to-end tests, benchmarks and the local runner's built-in desk.
//!
//! Every simulator shares one core ([`Sim`]): tickets with notes, customers and contacts, issued
//! tokens, programmable [`Fault`]s, request counts, a per-client rate limit and latency
//! injection; and one technician / test-control API under `/_sim` (see [`technician`]). A
//! simulator only supplies its API routes and a [`SimProfile`].

// Handlers return `Result<_, Response>`; the large error type is axum's response.
#![allow(clippy::result_large_err)]

pub mod contract;
pub mod desk;
pub mod faults;
pub mod generic;
pub mod report;
pub mod rt;
pub mod rt_peer;
mod server;
mod sim;
pub mod targets;
pub mod technician;
pub mod ticketsql;
pub mod tokens;
pub mod util;
pub mod webhooks;

pub mod bms;
pub mod ninjaone;
pub mod odata;
pub mod otrs;
pub mod psa;
pub mod vsa;

pub use faults::{Fault, FaultRule, Faults};
pub use server::SimServer;
pub use sim::{
    NewTicket, RateRule, RequestRecord, Sim, SimContact, SimCustomer, SimError, SimNote, SimProfile, SimTicket,
};
pub use tokens::{TokenCheck, TokenInfo, TokenKind, Tokens};
