//! The value one mail transaction produces: a row of smtp.log.

use std::net::IpAddr;

use crate::net::{ConnInfo, Ts};

/// One mail transaction, with the fields of SEMANTICS.md "Message records".
/// `None` / empty means "unknown" and is left out of the log line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessageRecord {
    /// Time of the transaction's first packet.
    pub ts: Ts,
    pub trans_depth: u32,
    pub helo: Option<String>,
    pub mailfrom: Option<String>,
    pub rcptto: Vec<String>,
    pub date: Option<String>,
    pub from: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub reply_to: Option<String>,
    pub msg_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub subject: Option<String>,
    pub x_originating_ip: Option<IpAddr>,
    pub first_received: Option<String>,
    pub second_received: Option<String>,
    pub last_reply: Option<String>,
    pub last_error: Option<String>,
    /// `id.resp_h`, `id.orig_h`, then the Received-path relay addresses.
    pub path: Vec<IpAddr>,
    pub user_agent: Option<String>,
    pub tls: bool,
    pub files: Vec<String>,
    /// Not logged: the address of the last Received header followed, the
    /// message's originating address for suspicious-origination checks.
    pub originating_addr: Option<IpAddr>,
}

/// A finished record together with the connection it belongs to: what the
/// smtp.log writer and the origination check consume.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnRecord {
    pub conn: ConnInfo,
    pub record: MessageRecord,
}
