//! The HTTP side of the endpoint: `GET /metrics` on a `metrics` thread
//! running a current-thread tokio runtime with hyper.
//!
//! The socket is bound before the thread starts, so a bad or busy address
//! is a startup error. Each connection is its own task with a header read
//! timeout, a header size limit, a deadline for the whole exchange and no
//! keep-alive, and only so many run at once: a slow or hostile client holds
//! up at most itself, never the packet path (which never waits on this
//! thread) nor, beyond its slot, other scrapers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};

use super::MetricsError;
use super::exposition::Exposition;
use super::format::Format;
use crate::telemetry::Telemetry;

/// The only path served.
const METRICS_PATH: &str = "/metrics";

/// How much a client may cost the endpoint.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Time to send the request line and headers.
    header_read_timeout: Duration,
    /// Time for the whole exchange, response included (a client that does
    /// not read its response is cut off here).
    connection_deadline: Duration,
    /// Bytes of request line and headers (431 beyond).
    max_header_bytes: usize,
    /// Connections served at once; more are closed right after accept.
    max_connections: usize,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        header_read_timeout: Duration::from_secs(5),
        connection_deadline: Duration::from_secs(30),
        max_header_bytes: 8 * 1024,
        max_connections: 16,
    };
}

/// The running endpoint. Dropping it (or [`MetricsServer::shutdown`])
/// stops the thread and closes the socket.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address actually listened on (the port, when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and waits for the thread to end.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The thread may have ended already; nothing to tell it then.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::warn!("the metrics thread panicked");
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Listens on `addr` now and serves `telemetry` at `GET /metrics` from a
/// thread named `metrics` until the returned server is dropped.
pub fn spawn(addr: SocketAddr, telemetry: Arc<Telemetry>) -> Result<MetricsServer, MetricsError> {
    spawn_with(addr, telemetry, Limits::DEFAULT)
}

fn spawn_with(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    limits: Limits,
) -> Result<MetricsServer, MetricsError> {
    let bind_err = |source| MetricsError::Bind { addr, source };
    let std_listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let local_addr = std_listener.local_addr().map_err(bind_err)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(MetricsError::Runtime)?;
    let listener = {
        let _context = runtime.enter();
        TcpListener::from_std(std_listener).map_err(MetricsError::Runtime)?
    };
    let exposition = Arc::new(Exposition::new(telemetry));
    let (stop, stopped) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || runtime.block_on(serve(listener, exposition, limits, stopped)))
        .map_err(MetricsError::Thread)?;
    Ok(MetricsServer {
        local_addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Accepts until told to stop; returning drops the listener, and the
/// runtime's end cancels the connections still open.
async fn serve(
    listener: TcpListener,
    exposition: Arc<Exposition>,
    limits: Limits,
    mut stopped: oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .keep_alive(false);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        log::debug!("metrics: {peer} refused, {} connections open", limits.max_connections);
                        continue;
                    };
                    let http = http.clone();
                    let exposition = Arc::clone(&exposition);
                    tokio::spawn(async move {
                        serve_connection(&http, stream, peer, exposition, limits).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // instead of spinning; the listener stays.
                    log::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn serve_connection(
    http: &http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    exposition: Arc<Exposition>,
    limits: Limits,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let response = respond(&req, &exposition);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(limits.connection_deadline, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::debug!("metrics: connection from {peer}: {e}"),
        Err(_) => log::debug!("metrics: connection from {peer} too slow, closed"),
    }
}

/// The answer to one request: the exposition at `GET`/`HEAD /metrics` in
/// the format the `Accept` header asks for, 405 for other methods there,
/// 404 elsewhere.
fn respond(req: &Request<Incoming>, exposition: &Exposition) -> Response<Full<Bytes>> {
    if req.uri().path() != METRICS_PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    match exposition.render_as(format) {
        Ok(text) => {
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            r.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Accept"));
            r
        }
        Err(e) => {
            log::warn!("metrics: {e}");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the metrics\n",
            )
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream};
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use super::*;
    use crate::metrics::format::{OPENMETRICS as CONTENT_TYPE, PROMETHEUS_TEXT};

    /// Guards against a hang; never a performance bound.
    const DEADLINE: Duration = Duration::from_secs(10);

    fn localhost() -> SocketAddr {
        (Ipv4Addr::LOCALHOST, 0).into()
    }

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Everything the server sends before it closes (or resets) the
    /// connection.
    fn read_all(stream: &mut TcpStream) -> Vec<u8> {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
                Err(e) => panic!("reading the reply: {e} (after {} bytes)", out.len()),
            }
        }
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> Reply {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request).unwrap();
        parse(&read_all(&mut s))
    }

    fn parse(raw: &[u8]) -> Reply {
        let text = String::from_utf8(raw.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("no end of headers");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
        let status = parts.next().unwrap().parse().unwrap();
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    fn get(addr: SocketAddr, path: &str) -> Reply {
        exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: sensor\r\n\r\n").as_bytes(),
        )
    }

    #[test]
    fn scrape_returns_current_counters() {
        let t = Telemetry::live("veth-smtp0", 1, 1);
        t.queues[0].add_batch(5, 500);
        let server = spawn(localhost(), Arc::clone(&t)).unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);

        let r = get(addr, "/metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("content-type"), Some(CONTENT_TYPE));
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        assert!(
            r.body
                .contains("\nsmtp_sensor_rx_frames_total{queue=\"0\"} 5\n"),
            "{}",
            r.body
        );
        assert!(r.body.ends_with("# EOF\n"));

        t.queues[0].add_batch(2, 100);
        t.collector.records_written.fetch_add(3, Ordering::Relaxed);
        let r = get(addr, "/metrics?from=test");
        assert_eq!(r.status, 200);
        assert!(
            r.body
                .contains("\nsmtp_sensor_rx_frames_total{queue=\"0\"} 7\n"),
            "{}",
            r.body
        );
        assert!(
            r.body.contains("\nsmtp_sensor_records_written_total 3\n"),
            "{}",
            r.body
        );
    }

    #[test]
    fn a_scraper_asking_for_the_text_format_gets_it() {
        let server = spawn(localhost(), Telemetry::offline(1)).unwrap();
        let addr = server.local_addr();
        let r = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: sensor\r\nAccept: text/plain;version=0.0.4;q=0.9,*/*;q=0.1\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(PROMETHEUS_TEXT));
        assert_eq!(r.header("vary"), Some("Accept"));
        assert!(!r.body.contains("# EOF"), "{}", r.body);
        assert!(
            r.body
                .contains("# TYPE smtp_sensor_records_written_total counter\n"),
            "{}",
            r.body
        );
        // Prometheus's own Accept header ranks OpenMetrics first.
        let r = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: sensor\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n",
        );
        assert_eq!(r.header("content-type"), Some(CONTENT_TYPE));
        assert!(r.body.ends_with("# EOF\n"));
    }

    #[test]
    fn head_has_headers_and_no_body() {
        let server = spawn(localhost(), Telemetry::offline(1)).unwrap();
        let r = exchange(
            server.local_addr(),
            b"HEAD /metrics HTTP/1.1\r\nHost: sensor\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(CONTENT_TYPE));
        assert_eq!(r.body, "");
    }

    #[test]
    fn other_paths_are_not_found_and_other_methods_not_allowed() {
        let server = spawn(localhost(), Telemetry::offline(1)).unwrap();
        let addr = server.local_addr();
        for path in ["/", "/metrics/", "/metricsx", "/favicon.ico"] {
            let r = get(addr, path);
            assert_eq!(r.status, 404, "{path}");
            assert!(!r.body.contains("smtp_sensor"), "{path}");
        }
        let r = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nHost: sensor\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }

    #[test]
    fn garbage_and_oversized_headers_get_errors_not_metrics() {
        let server = spawn(localhost(), Telemetry::offline(1)).unwrap();
        let addr = server.local_addr();
        let r = exchange(addr, b"\x16\x03\x01 not http at all\r\n\r\n");
        assert_eq!(r.status, 400);

        let big = format!(
            "GET /metrics HTTP/1.1\r\nHost: sensor\r\nX-Filler: {}\r\n\r\n",
            "a".repeat(Limits::DEFAULT.max_header_bytes)
        );
        let r = exchange(addr, big.as_bytes());
        assert_eq!(r.status, 431);
        // The server is still there for the next scraper.
        assert_eq!(get(addr, "/metrics").status, 200);
    }

    #[test]
    fn address_in_use_is_an_error_naming_it() {
        let taken = std::net::TcpListener::bind(localhost()).unwrap();
        let addr = taken.local_addr().unwrap();
        let err = spawn(addr, Telemetry::offline(1)).unwrap_err();
        assert!(
            matches!(&err, MetricsError::Bind { addr: a, source } if *a == addr
                && source.kind() == std::io::ErrorKind::AddrInUse),
            "{err:?}"
        );
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn a_stalled_client_holds_up_only_itself() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(200),
            ..Limits::DEFAULT
        };
        let server = spawn_with(localhost(), Telemetry::offline(1), limits).unwrap();
        let addr = server.local_addr();
        let mut stalled = TcpStream::connect(addr).unwrap();
        stalled.write_all(b"GET /metr").unwrap();

        // Served while the stalled request is still open.
        assert_eq!(get(addr, "/metrics").status, 200);

        // The stalled client is cut off by the header timeout, not served.
        let started = Instant::now();
        let rest = read_all(&mut stalled);
        assert!(started.elapsed() < DEADLINE);
        assert!(!String::from_utf8_lossy(&rest).contains("smtp_sensor"));
    }

    #[test]
    fn connections_beyond_the_limit_are_closed() {
        let limits = Limits {
            max_connections: 1,
            ..Limits::DEFAULT
        };
        let server = spawn_with(localhost(), Telemetry::offline(1), limits).unwrap();
        let addr = server.local_addr();
        let mut holder = TcpStream::connect(addr).unwrap();
        holder.write_all(b"GET /metr").unwrap();
        // Make sure the holder was accepted first: its slot is taken once
        // a second connection is turned away.
        let mut extra = TcpStream::connect(addr).unwrap();
        let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\nHost: sensor\r\n\r\n");
        assert!(read_all(&mut extra).is_empty());

        // Once the holder leaves, scrapes are served again.
        drop(holder);
        let started = Instant::now();
        loop {
            let mut s = TcpStream::connect(addr).unwrap();
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: sensor\r\n\r\n");
            let raw = read_all(&mut s);
            if !raw.is_empty() {
                assert_eq!(parse(&raw).status, 200);
                break;
            }
            assert!(started.elapsed() < DEADLINE, "slot never freed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn dropping_the_server_closes_the_socket() {
        let server = spawn(localhost(), Telemetry::offline(1)).unwrap();
        let addr = server.local_addr();
        assert_eq!(get(addr, "/metrics").status, 200);
        server.shutdown();
        let err = TcpStream::connect(addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        // The port is free again.
        let again = spawn(addr, Telemetry::offline(1)).unwrap();
        assert_eq!(get(again.local_addr(), "/metrics").status, 200);
    }

    #[test]
    fn the_thread_is_named_metrics() {
        let server = spawn(localhost(), Telemetry::offline(1)).unwrap();
        let name = server
            .thread
            .as_ref()
            .and_then(|t| t.thread().name().map(str::to_owned));
        assert_eq!(name.as_deref(), Some("metrics"));
    }
}
