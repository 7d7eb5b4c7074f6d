//! Reopen window (`reopen_within_minutes`): when a grouped alert's ticket closes, the group's
//! ticket is remembered (a group record under `closed/<key>`, stamped with the close time); an
//! alert of the same group within the window reopens that ticket with a note instead of opening a
//! new one, on targets that can reopen. Runs under the group's claim, like opening a ticket.

use chrono::{DateTime, Duration, Utc};

use super::Engine;
use crate::connectors::{Connector, ConnectorError, NoteRequest};
use crate::domain::{Task, TicketGroup, TicketRef};
use crate::render::render;

/// The group key under which a group's last closed ticket is remembered.
fn closed_key(key: &str) -> String {
    format!("closed/{key}")
}

impl Engine {
    /// Remembers the just-closed ticket of `task`'s group for the connection's reopen window.
    pub(super) async fn remember_closed_group(&self, task: &Task, now: DateTime<Utc>) {
        let Some(cfg) = self.config.connections.get(&task.connection) else { return };
        let (Some(key), Some(ticket)) = (&task.group_key, &task.ticket) else { return };
        if cfg.reopen_within_minutes == 0 {
            return;
        }
        let group = TicketGroup {
            connection: task.connection.clone(),
            key: closed_key(key),
            ticket: TicketRef { remote_status: None, ..ticket.clone() },
            owner: task.id.clone(),
            created_at: now,
        };
        let result = match self.store.create_group(&group).await {
            // An older closed ticket of the group: replace it.
            Ok(Some(old)) if old.ticket.id != ticket.id => {
                let _ = self.store.release_group(&task.connection, &group.key, &old.ticket.id).await;
                self.store.create_group(&group).await.map(|_| ())
            }
            other => other.map(|_| ()),
        };
        if let Err(e) = result {
            tracing::warn!(task = %task.id, error = %e, "could not remember the closed group ticket (no reopen)");
        }
    }

    /// Reopens the group's ticket if it closed within the window and the target can reopen it;
    /// `None` means open a new ticket. The remembered record is dropped once the reopened ticket
    /// is the group's open ticket again (`forget_closed_group`).
    pub(super) async fn try_reopen(
        &self,
        task: &Task,
        connector: &dyn Connector,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TicketRef>, ConnectorError> {
        let Some(cfg) = self.config.connections.get(&task.connection).filter(|c| c.reopen_within_minutes > 0) else {
            return Ok(None);
        };
        let closed = closed_key(key);
        let store_err = |e| ConnectorError::Server(format!("store: {e}"));
        let Some(group) = self.store.get_group(&task.connection, &closed).await.map_err(store_err)? else {
            return Ok(None);
        };
        if group.created_at < now - Duration::minutes(i64::from(cfg.reopen_within_minutes)) {
            let _ = self.store.release_group(&task.connection, &closed, &group.ticket.id).await;
            return Ok(None);
        }
        let view = super::task_json(task);
        let note = NoteRequest {
            correlation_key: task.id.to_string(),
            title: render(&cfg.template.note_title, &view, &task.connection).map_err(ConnectorError::Config)?,
            body: format!(
                "Reopened by Ticket Bridge: a new alert of this group arrived within {} minutes of closing.\n\n{}",
                cfg.reopen_within_minutes,
                render(&cfg.template.note_body, &view, &task.connection).map_err(ConnectorError::Config)?
            ),
        };
        match connector.reopen_ticket(&group.ticket, &note).await {
            Ok(()) => {
                tracing::info!(task = %task.id, ticket = %group.ticket.id, "reopened the group's ticket");
                Ok(Some(group.ticket))
            }
            Err(ConnectorError::Unsupported(why)) => {
                tracing::info!(task = %task.id, %why, "target cannot reopen; opening a new ticket");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Drops the remembered closed ticket of `task`'s group once it is open again.
    pub(super) async fn forget_closed_group(&self, task: &Task, key: &str, ticket: &TicketRef) {
        if let Err(e) = self.store.release_group(&task.connection, &closed_key(key), &ticket.id).await {
            tracing::warn!(task = %task.id, error = %e, "could not drop the closed group record");
        }
    }
}
