//! zocalo-channels: where people reach their computer besides its own CLI, API and web UI.
//!
//! - [`Transport`]: one channel (Telegram, email): receive new messages into the [`Inbox`],
//!   reply to one, send a notification to a target, check the credentials.
//! - [`Inbox`]: every inbound message once (unique on the channel's own id), recorded in the
//!   same transaction as the poller's position, answered after a crash if it was not.
//! - [`telegram`]: the Bot API over long polling. [`email`]: IMAP in (IDLE, else polling),
//!   SMTP out, threaded replies. [`webhook`]: signed inbound hooks and outbound deliveries.
//! - [`Target`] (`telegram:CHAT_ID`, `email:ADDR`, `webhook:NAME`), [`split`] (long answers
//!   cut at the channel's limit), [`Command`] (`/new`, `/model`, `/persona`, `/status`,
//!   `/help`).
//!
//! The loop that turns an inbound message into an ask and the ask's answer into a reply is
//! the runtime's (`zocalo_runtime::channels`): this crate knows the wire formats, not the ask
//! loop.

pub mod command;
pub mod email;
pub mod error;
pub mod inbox;
pub mod split;
pub mod target;
pub mod telegram;
pub mod webhook;

pub use command::Command;
pub use error::ChannelError;
pub use inbox::{Inbound, Inbox, InboxMessage, InboxState};
pub use split::split;
pub use target::Target;

use async_trait::async_trait;

/// One channel's wire: what the runtime's channel loop drives.
#[async_trait]
pub trait Transport: Send + Sync {
    /// The channel's name in the inbox and in targets (`telegram`, `email`).
    fn channel(&self) -> &str;

    /// Waits for new messages (a long poll, IMAP IDLE or a poll interval) and records them
    /// in `inbox` together with the new resume position, in one transaction. Messages from
    /// senders outside the allowlist are not recorded; Telegram sends them one short refusal,
    /// email none (mail senders are easily forged: a refusal would be backscatter). Returns
    /// how many new messages were recorded.
    async fn receive(&self, inbox: &Inbox) -> Result<usize, ChannelError>;

    /// Shows that an answer is being made (Telegram's "typing"); a no-op where the channel has
    /// nothing like it.
    async fn typing(&self, _msg: &InboxMessage) -> Result<(), ChannelError> {
        Ok(())
    }

    /// Replies to `msg` on its channel (split at the channel's limit, threaded where the
    /// channel threads).
    async fn reply(&self, msg: &InboxMessage, text: &str) -> Result<(), ChannelError>;

    /// Sends `text` to `to` (the part of a [`Target`] after `channel:`).
    async fn notify(&self, to: &str, text: &str) -> Result<(), ChannelError>;

    /// Checks the credentials and that the service answers; says who we are there.
    async fn check(&self) -> Result<String, ChannelError>;
}
