//! The dry-run transport: builds each message exactly as it would be sent
//! (so a message that cannot be built fails here too) and sends nothing.

use super::{Delivered, Message};
use crate::core::report::DeliveryOutcome;

#[derive(Debug, Clone, Copy)]
pub struct DryRun;

impl DryRun {
    pub fn send(&self, message: &Message) -> Result<Delivered, String> {
        message.mime()?;
        Ok(Delivered {
            outcome: DeliveryOutcome::DryRun,
            message_id: None,
            file: None,
        })
    }
}
