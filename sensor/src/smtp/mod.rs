//! SMTP analysis: a state machine over both directions of one connection
//! that turns commands, replies and message data into `MessageRecord`s.

pub mod anomaly;
pub mod record;
pub mod sink;
