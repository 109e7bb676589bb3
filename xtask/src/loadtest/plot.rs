//! `--plot FILE.svg`: the runs as one picture of two panels, so that where
//! each configuration starts to lose, and what a frame costs on the way
//! there, can be seen at a glance:
//!
//! - left: rate received by userspace against rate offered, one series per
//!   configuration, and the line y = x (nothing lost);
//! - right: sensor CPU per frame against rate offered, one series per
//!   configuration, and a dashed horizontal line per configuration at the
//!   offline CPU per packet of the same capture.
//!
//! [`panels`] turns rows into series (pure, tested); [`draw`] renders
//! them with plotters' SVG backend.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::row::Row;

/// One configuration's points, in Mpps on x.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    /// Sorted by x.
    pub points: Vec<(f64, f64)>,
}

/// What the two panels show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Panels {
    /// (offered Mpps, received Mpps) per configuration.
    pub received: Vec<Series>,
    /// (offered Mpps, sensor CPU ns per frame) per configuration.
    pub cpu: Vec<Series>,
    /// Offline CPU ns per packet per configuration, in the same order.
    pub offline_ns: Vec<f64>,
}

/// Groups rows by configuration (in the order first seen), points sorted
/// by offered rate; a run that received nothing has no CPU point.
pub fn panels(rows: &[Row]) -> Panels {
    let mut p = Panels::default();
    for r in rows {
        let i = match p.received.iter().position(|s| s.name == r.config) {
            Some(i) => i,
            None => {
                for list in [&mut p.received, &mut p.cpu] {
                    list.push(Series {
                        name: r.config.clone(),
                        points: Vec::new(),
                    });
                }
                p.offline_ns.push(r.offline.cpu_ns());
                p.received.len() - 1
            }
        };
        let x = r.sent.pps / 1e6;
        p.received[i].points.push((x, r.received_pps() / 1e6));
        if let Some(ns) = r.cpu_ns_per_frame() {
            p.cpu[i].points.push((x, ns));
        }
    }
    for s in p.received.iter_mut().chain(p.cpu.iter_mut()) {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    p
}

/// The largest y (or x, `x = true`) of any point, at least `floor`, with
/// a tenth of headroom.
fn top(series: &[Series], x: bool, floor: f64) -> f64 {
    series
        .iter()
        .flat_map(|s| &s.points)
        .map(|&(a, b)| if x { a } else { b })
        .fold(floor, f64::max)
        * 1.1
}

/// Writes the two panels to `path` as SVG.
pub fn draw(path: &Path, p: &Panels) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| anyhow!("cannot draw {}: {e}", path.display());
    let root = SVGBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (left, right) = root.split_horizontally(700);
    let x_max = top(&p.received, true, 0.001);

    let y_max = top(&p.received, false, 0.001).max(x_max);
    let mut chart = ChartBuilder::on(&left)
        .caption("frames received vs offered", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("offered (Mpps)")
        .y_desc("received by userspace (Mpps)")
        .draw()
        .map_err(|e| fail(&e))?;
    let grey = RGBColor(150, 150, 150);
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (x_max, x_max)],
            6,
            4,
            grey.into(),
        ))
        .map_err(|e| fail(&e))?
        .label("y = x (no loss)")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey));
    for (i, s) in p.received.iter().enumerate() {
        series(&mut chart, s, Palette99::pick(i).to_rgba()).map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;

    // The upper third is left to the legend: costs are high both at low
    // rates (small batches) and in overload, so no corner is free.
    let offline_max = p.offline_ns.iter().copied().fold(1.0, f64::max);
    let y_max = top(&p.cpu, false, offline_max) * 1.4;
    let mut chart = ChartBuilder::on(&right)
        .caption("sensor CPU per frame", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("offered (Mpps)")
        .y_desc("CPU per frame (ns)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, s) in p.cpu.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        series(&mut chart, s, color).map_err(|e| fail(&e))?;
        if let Some(&ns) = p.offline_ns.get(i) {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, ns), (x_max, ns)],
                    6,
                    4,
                    color.into(),
                ))
                .map_err(|e| fail(&e))?
                .label(format!("{} offline", s.name))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A configuration's line with a dot per run, in the legend by its name.
fn series(
    chart: &mut Chart,
    s: &Series,
    color: RGBAColor,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    chart
        .draw_series(LineSeries::new(
            s.points.iter().copied(),
            color.stroke_width(2),
        ))?
        .label(s.name.clone())
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::row::tests::clean;
    use super::*;

    #[test]
    fn rows_become_one_series_per_configuration_sorted_by_rate() {
        let mut a_fast = clean(2e6);
        a_fast.sensor.rx_frames = 1_000_000;
        let a_slow = clean(1e6);
        let mut b = clean(5e5);
        b.config = "1q 1w drv".to_owned();
        b.offline.cpu *= 2;
        let mut b_none = clean(7e5);
        b_none.config = b.config.clone();
        b_none.sensor.rx_frames = 0;
        let p = panels(&[a_fast, b, a_slow, b_none]);
        let names: Vec<&str> = p.received.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["2q 2w sym drv", "1q 1w drv"]);
        let near = |got: &[(f64, f64)], want: &[(f64, f64)]| {
            got.len() == want.len()
                && got
                    .iter()
                    .zip(want)
                    .all(|(g, w)| (g.0 - w.0).abs() < 1e-9 && (g.1 - w.1).abs() < 1e-9)
        };
        // Offered Mpps on x, sorted; received = rx_frames / 10 s.
        let r = &p.received;
        assert!(near(&r[0].points, &[(1.0, 0.0499), (2.0, 0.1)]), "{r:?}");
        assert!(near(&r[1].points, &[(0.5, 0.0499), (0.7, 0.0)]), "{r:?}");
        // No CPU point for a run that received nothing.
        let c = &p.cpu;
        assert!(
            near(&c[0].points, &[(1.0, 4.5e9 / 499_000.0), (2.0, 4500.0)]),
            "{c:?}"
        );
        assert_eq!(c[1].points.len(), 1);
        assert!(near(
            &[(p.offline_ns[0], p.offline_ns[1])],
            &[(800.0, 1600.0)]
        ));
    }

    #[test]
    fn draws_an_svg_with_both_panels() {
        let path = std::env::temp_dir().join(format!("xtask-plot-{}.svg", std::process::id()));
        let mut other = clean(3e5);
        other.config = "1q 1w drv".to_owned();
        draw(&path, &panels(&[clean(1e5), clean(2e5), other])).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        for want in [
            "frames received vs offered",
            "sensor CPU per frame",
            "2q 2w sym drv",
            "1q 1w drv offline",
            "y = x (no loss)",
        ] {
            assert!(svg.contains(want), "{want}");
        }
    }
}
