//! Test support: synthetic SMTP traffic and pcap writing.
