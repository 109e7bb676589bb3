//! Which text format a scrape gets, and the Prometheus text format 0.0.4
//! made from the OpenMetrics text `prometheus-client` writes.
//!
//! Prometheus asks for OpenMetrics first, but other scrapers (older
//! Prometheus with `scrape_protocols` set, the Datadog/Telegraf/VictoriaMetrics
//! agents, `promtool check metrics`) want `text/plain; version=0.0.4`,
//! which differs in a few places: no `# UNIT` and no `# EOF` lines, a
//! counter's HELP and TYPE name the `_total` series, an info metric is a
//! gauge named `<name>_info`. Everything else (samples, labels, values) is
//! the same, so the conversion rewrites the metadata lines and passes the
//! samples through.

use std::borrow::Cow;

/// The Content-Type of the OpenMetrics exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Content-Type of the Prometheus text exposition.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A text exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    PrometheusText,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::PrometheusText => PROMETHEUS_TEXT,
        }
    }

    /// The format for a request's `Accept` header: the Prometheus text
    /// format when the client ranks `text/plain` above OpenMetrics (or
    /// accepts only it), OpenMetrics otherwise (no header, `*/*`, a tie,
    /// anything unreadable).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::OpenMetrics;
        };
        let mut openmetrics = 0.0f32;
        let mut text = 0.0f32;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut version: Option<String> = None;
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(v.trim().trim_matches('"').to_owned()),
                    _ => {}
                }
            }
            if !q.is_finite() {
                continue;
            }
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                // Only the one version of the text format exists; another
                // version is one this sensor cannot write.
                "text/plain" if version.as_deref().is_none_or(|v| v == "0.0.4") => {
                    text = text.max(q);
                }
                _ => {}
            }
        }
        if text > openmetrics {
            Format::PrometheusText
        } else {
            Format::OpenMetrics
        }
    }
}

/// The Prometheus text format 0.0.4 of an OpenMetrics exposition as
/// `prometheus-client` writes it (HELP, TYPE, optional UNIT, then the
/// family's samples; `# EOF` last).
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // A family's HELP waits for its TYPE, which says how to rename both.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take());
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (series, ty) = match ty {
                "counter" => (Cow::Owned(format!("{name}_total")), "counter"),
                "info" => (Cow::Owned(format!("{name}_info")), "gauge"),
                "histogram" | "gauge" | "summary" | "untyped" => (Cow::Borrowed(name), ty),
                // stateset, gaugehistogram, unknown: no 0.0.4 type.
                _ => (Cow::Borrowed(name), "untyped"),
            };
            match help.take() {
                Some((h, text)) if h == name => flush_help(&mut out, Some((&series, text))),
                other => flush_help(&mut out, other),
            }
            out.push_str("# TYPE ");
            out.push_str(&series);
            out.push(' ');
            out.push_str(ty);
            out.push('\n');
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            flush_help(&mut out, help.take());
            out.push_str(line);
            out.push('\n');
        }
    }
    flush_help(&mut out, help.take());
    out
}

/// Writes a HELP line; OpenMetrics escapes `"` in HELP text, 0.0.4 does
/// not (only `\` and newline, which keep their escapes).
fn flush_help(out: &mut String, help: Option<(&str, &str)>) {
    let Some((name, text)) = help else {
        return;
    };
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    out.push_str(&text.replace("\\\"", "\""));
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Prometheus 2.x/3.x sends by default.
    const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn negotiation() {
        use Format::*;
        assert_eq!(Format::negotiate(None), OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), OpenMetrics);
        assert_eq!(Format::negotiate(Some(PROMETHEUS_ACCEPT)), OpenMetrics);
        assert_eq!(Format::negotiate(Some("text/plain")), PrometheusText);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4;q=0.9, */*;q=0.1")),
            PrometheusText
        );
        // Prometheus with scrape_protocols = [PrometheusText0.0.4, ...].
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4"
            )),
            PrometheusText
        );
        assert_eq!(
            Format::negotiate(Some("text/plain; version=1.0.0")),
            OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("text/plain;q=nan")), OpenMetrics);
        assert_eq!(Format::negotiate(Some(";;;,,,=;q")), OpenMetrics);
    }

    #[test]
    fn metadata_is_rewritten_samples_kept() {
        let om = "# HELP a_frames Frames \\\"seen\\\".\n# TYPE a_frames counter\na_frames_total{q=\"0\"} 3\n\
# HELP a_rx_bytes Bytes.\n# TYPE a_rx_bytes counter\n# UNIT a_rx_bytes bytes\na_rx_bytes_total 5\n\
# HELP a_build Version.\n# TYPE a_build info\na_build_info{version=\"1\"} 1\n\
# HELP a_up Up.\n# TYPE a_up gauge\na_up 1.5\n\
# HELP a_merge_seconds Merge.\n# TYPE a_merge_seconds histogram\n# UNIT a_merge_seconds seconds\n\
a_merge_seconds_sum 0.5\na_merge_seconds_count 1\na_merge_seconds_bucket{le=\"+Inf\"} 1\n# EOF\n";
        let text = to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP a_frames_total Frames \"seen\".\n# TYPE a_frames_total counter\na_frames_total{q=\"0\"} 3\n\
# HELP a_rx_bytes_total Bytes.\n# TYPE a_rx_bytes_total counter\na_rx_bytes_total 5\n\
# HELP a_build_info Version.\n# TYPE a_build_info gauge\na_build_info{version=\"1\"} 1\n\
# HELP a_up Up.\n# TYPE a_up gauge\na_up 1.5\n\
# HELP a_merge_seconds Merge.\n# TYPE a_merge_seconds histogram\n\
a_merge_seconds_sum 0.5\na_merge_seconds_count 1\na_merge_seconds_bucket{le=\"+Inf\"} 1\n"
        );
    }
}
