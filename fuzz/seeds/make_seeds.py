#!/usr/bin/env python3
"""Writes the committed seed corpus of the fuzz targets (fuzz/seeds/<target>/).

The seeds are small on purpose: libFuzzer grows its own corpus from them
(`cargo xtask fuzz` keeps that in the target directory, not here). The SMTP
seeds are the conversations of the golden scenarios (tests/src/synth) cut
down to what makes them different: plain, pipelined, BDAT, STARTTLS,
rejected, with a gap. Run from anywhere: `python3 fuzz/seeds/make_seeds.py`.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- session: see `Session` in fuzz/src/lib.rs ------------------------------


def client(b):
    return data_step(0, b)


def server(b):
    return data_step(1, b)


def data_step(kind, b):
    if isinstance(b, str):
        b = b.encode()
    if len(b) < 256:
        return bytes([kind, len(b)]) + b
    return bytes([kind | 4]) + struct.pack("<H", len(b)) + b


def gap(from_server, n):
    return bytes([2 | (4 if from_server else 0)]) + struct.pack("<H", n)


def split(at):
    return bytes([3, at])


MESSAGE = (
    "Received: from relay.example.com ([198.51.100.7]) by mx.example.net\r\n"
    "From: Alice <a@example.com>\r\n"
    "To: b@example.net, Carol <c@example.net>\r\n"
    "Subject: =?UTF-8?B?aGVsbG8=?=\r\n"
    " folded\r\n"
    "Message-ID: <1.2@example.com>\r\n"
    "X-Originating-IP: [198.51.100.9]\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n'
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "hello\r\n"
    "..dot-stuffed line\r\n"
    "--b1\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Disposition: attachment;\r\n"
    "\tfilename*=UTF-8''f%C3%BCnf.txt\r\n"
    "\r\n"
    "QUJD\r\n"
    "--b1--\r\n"
)

HELLO = [
    server("220 mx.example.net ESMTP\r\n"),
    client("EHLO client.example.com\r\n"),
    server("250-mx.example.net\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"),
]


def session(name, config, steps):
    write("session", name, bytes([config]) + b"".join(steps))


def plain_mail():
    return [
        client("MAIL FROM:<a@example.com>\r\n"),
        server("250 OK\r\n"),
        client("RCPT TO:<b@example.net>\r\n"),
        server("250 Accepted\r\n"),
        client("DATA\r\n"),
        server("354 go ahead\r\n"),
        split(40),
        client(MESSAGE + ".\r\n"),
        server("250 OK queued as X1\r\n"),
    ]


session("basic", 0, HELLO + plain_mail() + [client("QUIT\r\n"), server("221 bye\r\n")])
session("tiny_limits", 1, HELLO + plain_mail())
session(
    "pipelining",
    0,
    HELLO
    + [
        client("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n"
               "RCPT TO:<x@example.net>\r\nDATA\r\n"),
        server("250 OK\r\n250 OK\r\n550 5.7.1 blocked, see https://www.spamhaus.org/\r\n"
               "354 go\r\n"),
        client("Subject: p\r\n\r\nbody\r\n.\r\nRSET\r\nMAIL FROM:<c@example.com>\r\n"),
        server("250 queued\r\n250 reset\r\n250 OK\r\n"),
    ],
)
session(
    "bdat",
    0,
    HELLO
    + [
        client("MAIL FROM:<a@example.com>\r\n"),
        server("250 OK\r\n"),
        client("RCPT TO:<b@example.net>\r\n"),
        server("250 OK\r\n"),
        client("BDAT 30\r\nSubject: chunked\r\n\r\nbody one\r\n"),
        server("250 30 octets\r\n"),
        client("BDAT 0 LAST\r\n"),
        server("250 queued\r\n"),
    ],
)
session(
    "starttls",
    8,
    HELLO
    + [
        client("STARTTLS\r\n"),
        server("220 go ahead\r\n"),
        client(b"\x16\x03\x01\x00\x30client hello"),
        server(b"\x16\x03\x03\x00\x30server hello"),
    ],
)
session(
    "rejected_gap",
    4,
    [
        server("554 5.7.1 no service for you\r\n"),
        client("HELO x\r\n"),
        server("501 refused\r\n"),
        client("MAIL FROM:<a@example.com>\r\n"),
        gap(True, 100),
        client("RCPT TO:<b@example.net>\r\nDATA\r\n"),
        server("250 OK\r\n354 go\r\n"),
        client("Subject: cut\r\n\r\nbody\r\n"),
        gap(False, 5000),
        client("\r\n.\r\n"),
        server("250 OK\r\n"),
    ],
)

# --- mime: a configuration byte, then a message body -------------------------

write("mime", "multipart", b"\x00" + MESSAGE.encode())
write(
    "mime",
    "nested_rfc822",
    b"\x01"
    + (
        "Content-Type: multipart/alternative; boundary=OUT\r\n"
        "\r\n"
        "--OUT\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        "From: inner@example.com\r\n"
        "Content-Type: text/plain; name=\"a.txt\"\r\n"
        "\r\n"
        "inner body\r\n"
        "--OUT--\r\n"
    ).encode(),
)

# --- config: TOML text -------------------------------------------------------

write(
    "config",
    "sensor",
    b"""smtp_ports = [25, 587]
local_nets = ["198.18.0.0/15", "2001:db8::/32"]
spam_threshold = 300
inspect_period = "60m"
reject_codes = [550, 554]
blocklist_patterns = ['spamhaus\\.org/', 'dyndns\\.com/.*spam']
mail_path_capture = "remote"
suspicious_countries = ["GB"]
conn_idle_timeout = "5m"
max_line_len = 4096
""",
)
write("config", "sets", b"max_rcptto=10\nlocal_mail=10.0.0.0/8,192.0.2.0/24\ninspect_period=90s\n")

# --- decode: a link-type byte, then a frame ----------------------------------


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp(src, dst, pseudo, sport, dport, seq, ack, flags, payload):
    h = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    c = csum(pseudo + struct.pack("!H", len(h) + len(payload)) + h + payload)
    return h[:16] + struct.pack("!H", c) + h[18:] + payload


def ipv4(payload_fn, flags, payload):
    src, dst = bytes([198, 18, 0, 1]), bytes([198, 19, 0, 25])
    seg = payload_fn(src, dst, src + dst + b"\x00\x06", flags, payload)
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0x4000, 64, 6, 0, src, dst)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + seg


def ipv6(payload_fn, flags, payload):
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000002")
    seg = payload_fn(src, dst, src + dst + b"\x00\x00\x00\x06", flags, payload)
    return struct.pack("!IHBB", 6 << 28, len(seg), 6, 64) + src + dst + seg


def seg_fn(sport, dport, seq, ack):
    return lambda s, d, pseudo, flags, payload: tcp(s, d, pseudo, sport, dport, seq, ack, flags, payload)


ETH = bytes.fromhex("020000000002020000000001")
data = b"MAIL FROM:<a@example.com>\r\n"
v4 = ipv4(seg_fn(40000, 25, 1000, 2000), 0x18, data)
write("decode", "eth_ipv4_data", b"\x80" + ETH + b"\x08\x00" + v4 + b"\0" * 6)
write("decode", "eth_ipv4_syn", b"\x80" + ETH + b"\x08\x00" + ipv4(seg_fn(40000, 25, 999, 0), 0x02, b""))
v6 = ipv6(seg_fn(25, 40000, 2000, 1027), 0x18, b"250 OK\r\n")
qinq = b"\x88\xa8\x00\x0a\x81\x00\x00\x14\x86\xdd"
write("decode", "eth_qinq_ipv6", b"\x80" + ETH + qinq + v6)
sll = struct.pack("!HHH8sH", 0, 1, 6, b"\x02\0\0\0\0\x01\0\0", 0x0800)
write("decode", "sll_ipv4", b"\x81" + sll + v4)
write("decode", "raw_ipv6", b"\x83" + v6)
write("decode", "null_ipv4", b"\x86" + struct.pack("<I", 2) + v4)

# --- reassembly: see `Input` and `Op` in fuzz/fuzz_targets/reassembly.rs -------
# Input: cap u16, isn u32, server_isn u32 (little-endian), then per op a 1
# (another op follows) and who u8, flags u8, off u16, len u8, ack u16, dt u8,
# quirks u8.

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10


def op(who, flags, off, length, ack=0, dt=1, quirks=0):
    return b"\x01" + struct.pack("<BBHBHBB", who, flags, off, length, ack, dt, quirks)


def reasm(name, cap, isn, server_isn, ops):
    write("reassembly", name, struct.pack("<HII", cap, isn, server_isn) + b"".join(ops))


S = 4  # `who` bit: from the server
reasm(
    "in_order_close",
    65535,
    0xFFFFFF00,
    7,
    [
        op(0, SYN, 0, 0),
        op(S, SYN | ACK, 0, 0, ack=0),
        op(0, ACK | PSH, 0, 100),
        op(S, ACK | PSH, 0, 20, ack=100),
        op(0, ACK | PSH, 100, 200),
        op(0, FIN | ACK, 300, 0),
        op(S, FIN | ACK, 20, 0, ack=301),
    ],
)
reasm(
    "reorder_retransmit",
    1024,
    12345,
    777,
    [
        op(0, ACK, 0, 50),
        op(0, ACK, 100, 50),
        op(0, ACK, 50, 50),
        op(0, ACK, 25, 100, quirks=1),
        op(S, ACK, 0, 0, ack=150),
        op(0, ACK, 300, 10),
        op(S, ACK, 0, 0, ack=400, quirks=2),
    ],
)
reasm(
    "tiny_window_many_flows",
    64,
    1,
    2,
    [
        op(0, SYN, 0, 0),
        op(1, SYN, 0, 0),
        op(2, SYN, 0, 0),
        op(0, ACK, 200, 60),
        op(0, ACK, 100, 60),
        op(0, ACK, 0, 60),
        op(1, ACK, 0, 10, dt=0xFF),
        op(0, SYN, 5000, 0),
        op(0, RST, 0, 0),
    ],
)
