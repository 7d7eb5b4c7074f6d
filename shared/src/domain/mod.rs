//! Pure domain model: tasks, tickets, connections and the task state machine. No I/O here.

mod connection;
mod delivery;
mod names;
mod psa_record;
mod state;
mod task;
mod ticket;
mod ticket_close;

pub use connection::*;
pub use delivery::*;
pub use names::*;
pub use psa_record::*;
pub use state::*;
pub use task::*;
pub use ticket::*;
pub use ticket_close::*;
