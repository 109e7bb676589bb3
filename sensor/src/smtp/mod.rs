//! SMTP analysis: a state machine over both directions of one connection
//! that turns commands, replies and message data into `MessageRecord`s.
//!
//! Layout (data flows top to bottom):
//! - `lines`: line framing per direction (memchr, bounded buffers)
//! - `parser`: pure parsing of command/reply lines, BDAT arguments,
//!   addresses and header lines
//! - `session`: the state machine that owns the transaction
//! - `mime`: MIME entity structure, header unfolding, attachment names
//! - `files`: each entity's body decoded, sniffed and hashed (files.log)
//! - `message`: the transaction being built and how headers fill it
//! - `received`: the Received path
//! - `config`, `limits`: what a session is configured with
//! - `record`, `sink`, `anomaly`: what comes out
//! - `text`: wire bytes as text

pub mod anomaly;
pub mod config;
pub mod files;
pub mod limits;
pub mod lines;
pub mod message;
pub mod mime;
pub mod parser;
pub mod received;
pub mod record;
pub mod session;
pub mod sink;
pub mod text;

pub use config::{PathCapture, SmtpConfig};
pub use limits::SmtpLimits;
pub use session::SmtpSession;
