//! The live-capture entry: a `Dispatcher` is a `capture::FrameSink`, so the
//! AF_XDP capture loop feeds the same pipeline `-r` uses (Ethernet frames,
//! stamped with the capture clock; `tick` drives timeouts and periods while
//! no traffic arrives).

use crate::capture::{Frame, FrameSink};
use crate::decode::LinkType;
use crate::flow::StreamParser;
use crate::net::Ts;

use super::dispatch::Dispatcher;
use super::worker::WorkerSink;

impl<P: StreamParser<WorkerSink> + Send + 'static> FrameSink for Dispatcher<P> {
    fn frames(&mut self, _queue: u32, batch: &[Frame<'_>]) {
        for f in batch {
            self.feed(f.ts, Some(LinkType::Ethernet), f.data);
        }
    }

    fn tick(&mut self, now: Ts) {
        self.advance(now);
    }

    fn finish(&mut self) {
        Dispatcher::finish(self);
    }
}
