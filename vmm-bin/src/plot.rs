//! `--exit-plot PATH.svg`: a picture of a run, drawn with plotters' SVG
//! backend from the exit timeline vmm-core recorded
//! ([`vmm_core::timeline::TimelineSnapshot`]): exits per kind over time as
//! stacked bars, the start-up phases as vertical lines, and a legend with
//! each kind's total.
//!
//! The bars are chosen from the run's length: the recorded buckets (at most
//! 1024, a power of two nanoseconds wide) are merged into at most
//! [`MAX_BARS`] bars, so a run of 3 exits and one of 10 million both give a
//! readable picture of bounded size. Every element of a kind's series
//! carries `class="exits-<kind>"` (`exits-io_out`...), so tools and tests
//! can find the series.

use std::io::Write;

use plotters::prelude::*;
use vmm_core::cpu::ExitKind;
use vmm_core::explain::group_thousands;
use vmm_core::timeline::TimelineSnapshot;

/// Most bars drawn, whatever the run's length.
pub const MAX_BARS: usize = 120;

/// Picture size in pixels.
const SIZE: (u32, u32) = (1000, 560);

/// Errors drawing or writing the picture.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// plotters failed.
    #[error("drawing the exit plot failed: {0}")]
    Draw(String),
    /// Writing the file failed.
    #[error("writing the exit plot failed: {0}")]
    Write(#[from] std::io::Error),
}

/// The fill colour of a kind's bars (distinct, and none is black, white or
/// the grey of the phase lines, so the classes can be attached by colour).
fn colour(kind: ExitKind) -> RGBColor {
    match kind {
        ExitKind::IoIn => RGBColor(0x1f, 0x77, 0xb4),
        ExitKind::IoOut => RGBColor(0xff, 0x7f, 0x0e),
        ExitKind::MmioRead => RGBColor(0x2c, 0xa0, 0x2c),
        ExitKind::MmioWrite => RGBColor(0xd6, 0x27, 0x28),
        ExitKind::Hlt => RGBColor(0x94, 0x67, 0xbd),
        ExitKind::Shutdown => RGBColor(0x8c, 0x56, 0x4b),
        ExitKind::InternalError => RGBColor(0xe3, 0x77, 0xc2),
        ExitKind::FailEntry => RGBColor(0xbc, 0xbd, 0x22),
        ExitKind::Debug => RGBColor(0x17, 0xbe, 0xcf),
        ExitKind::SystemEvent => RGBColor(0x39, 0x3b, 0x79),
        ExitKind::Interrupted => RGBColor(0x63, 0x79, 0x39),
        ExitKind::Other => RGBColor(0x84, 0x3c, 0x39),
    }
}

/// The KVM exit a kind stands for, for the legend.
fn kvm_name(kind: ExitKind) -> &'static str {
    match kind {
        ExitKind::IoIn => "KVM_EXIT_IO in",
        ExitKind::IoOut => "KVM_EXIT_IO out",
        ExitKind::MmioRead => "KVM_EXIT_MMIO read",
        ExitKind::MmioWrite => "KVM_EXIT_MMIO write",
        ExitKind::Hlt => "KVM_EXIT_HLT",
        ExitKind::Shutdown => "KVM_EXIT_SHUTDOWN",
        ExitKind::InternalError => "KVM_EXIT_INTERNAL_ERROR",
        ExitKind::FailEntry => "KVM_EXIT_FAIL_ENTRY",
        ExitKind::Debug => "KVM_EXIT_DEBUG",
        ExitKind::SystemEvent => "KVM_EXIT_SYSTEM_EVENT",
        ExitKind::Interrupted => "KVM_RUN interrupted (EINTR)",
        ExitKind::Other => "other exits",
    }
}

/// A time axis unit that keeps the numbers short: (name, seconds per unit).
fn time_unit(span_secs: f64) -> (&'static str, f64) {
    if span_secs < 2e-3 {
        ("us", 1e-6)
    } else if span_secs < 2.0 {
        ("ms", 1e-3)
    } else {
        ("s", 1.0)
    }
}

/// A duration in the unit that reads best (`1.24 ms`).
fn duration_text(secs: f64) -> String {
    let (unit, per) = time_unit(secs);
    format!("{:.3} {unit}", secs / per)
        .replace(".000 ", " ")
        .to_string()
}

/// Bars for the picture: each kind's counts merged `group` buckets at a
/// time, with the bar width in seconds.
struct Bars {
    width: f64,
    series: Vec<(ExitKind, Vec<u64>)>,
}

fn bars(snapshot: &TimelineSnapshot) -> Bars {
    let buckets = snapshot.series.first().map_or(1, |(_, c)| c.len()).max(1);
    let group = buckets.div_ceil(MAX_BARS).max(1);
    let series = snapshot
        .series
        .iter()
        .map(|(kind, counts)| {
            (
                *kind,
                counts.chunks(group).map(|c| c.iter().sum()).collect(),
            )
        })
        .collect();
    Bars {
        width: snapshot.bucket.as_secs_f64() * group as f64,
        series,
    }
}

/// Height of one line in the key below the chart.
const KEY_LINE: u32 = 20;

/// Draws `snapshot` as an SVG document.
pub fn render(snapshot: &TimelineSnapshot) -> Result<String, PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError::Draw(e.to_string());
    let bars = bars(snapshot);
    let span = snapshot.span().as_secs_f64().max(bars.width);
    let (unit, per) = time_unit(span);
    let nbars = bars.series.first().map_or(0, |(_, c)| c.len());
    let totals: Vec<u64> = (0..nbars)
        .map(|i| bars.series.iter().map(|(_, c)| c[i]).sum())
        .collect();
    let peak = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    // Headroom for the phase numbers above the bars.
    let y_max = (peak * 1.2).max(peak + 1.0).ceil();
    let x_max = span / per;
    let key_lines = snapshot.phases.len().max(snapshot.series.len()) as u32 + 1;
    let key_height = 16 + KEY_LINE * key_lines;
    let size = (SIZE.0, SIZE.1 + key_height);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (plot_area, key_area) = root.split_vertically(SIZE.1);
        let title = format!(
            "Exits per kind over time: {} exits in {}",
            group_thousands(snapshot.total()),
            duration_text(span)
        );
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(format!("time since the VMM started ({unit})"))
            .y_desc(format!("exits per {} bar", duration_text(bars.width)))
            .y_labels(if y_max <= 10.0 {
                y_max as usize + 1
            } else {
                10
            })
            .y_label_formatter(&|y| {
                if y.fract() == 0.0 {
                    group_thousands(*y as u64)
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(|e| err(&e))?;

        // Stacked: each kind's bar sits on the kinds before it.
        let mut base = vec![0u64; nbars];
        for (kind, counts) in &bars.series {
            let c = colour(*kind);
            let rects: Vec<Rectangle<(f64, f64)>> = counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| {
                    let x0 = i as f64 * bars.width / per;
                    let x1 = (x0 + bars.width / per).min(x_max);
                    let (y0, y1) = (base[i] as f64, (base[i] + n) as f64);
                    Rectangle::new([(x0, y0), (x1, y1)], c.filled())
                })
                .collect();
            for (b, n) in base.iter_mut().zip(counts) {
                *b += n;
            }
            chart.draw_series(rects).map_err(|e| err(&e))?;
        }

        // Start-up phases: a grey line each, numbered at the top (stepped
        // down, so phases close together stay legible); the key names them.
        let grey = RGBColor(0x60, 0x60, 0x60);
        for (i, (_, at)) in snapshot.phases.iter().enumerate() {
            let x = at.as_secs_f64() / per;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, y_max)],
                    grey.stroke_width(1),
                )))
                .map_err(|e| err(&e))?;
            let y = y_max * (0.99 - 0.035 * (i % 5) as f64);
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" {}", i + 1),
                    (x, y),
                    ("sans-serif", 13).into_font().color(&grey),
                )))
                .map_err(|e| err(&e))?;
        }

        // The key: phases on the left, exit kinds (the legend) on the right.
        let heading = ("sans-serif", 15).into_font().color(&BLACK);
        let body = ("sans-serif", 14).into_font().color(&BLACK);
        let line_y = |i: usize| 8 + KEY_LINE as i32 * (i as i32 + 1);
        key_area
            .draw(&Text::new(
                "Start-up phases (time since the VMM started)",
                (82, 8),
                heading.clone(),
            ))
            .map_err(|e| err(&e))?;
        for (i, (name, at)) in snapshot.phases.iter().enumerate() {
            key_area
                .draw(&Text::new(
                    format!("{}  {name}: {}", i + 1, duration_text(at.as_secs_f64())),
                    (82, line_y(i)),
                    body.clone(),
                ))
                .map_err(|e| err(&e))?;
        }
        let legend_x = 520;
        key_area
            .draw(&Text::new("Exits per kind (total)", (legend_x, 8), heading))
            .map_err(|e| err(&e))?;
        for (i, (kind, counts)) in snapshot.series.iter().enumerate() {
            let y = line_y(i);
            key_area
                .draw(&Rectangle::new(
                    [(legend_x, y + 1), (legend_x + 14, y + 15)],
                    colour(*kind).filled(),
                ))
                .map_err(|e| err(&e))?;
            key_area
                .draw(&Text::new(
                    format!(
                        "{} ({}): {}",
                        kind.name(),
                        kvm_name(*kind),
                        group_thousands(counts.iter().sum())
                    ),
                    (legend_x + 22, y),
                    body.clone(),
                ))
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(tag_series(svg, snapshot))
}

/// Adds `class="exits-<kind>"` to every element filled with a kind's
/// colour: plotters' SVG backend has no ids or classes of its own.
fn tag_series(mut svg: String, snapshot: &TimelineSnapshot) -> String {
    for (kind, _) in &snapshot.series {
        let RGBColor(r, g, b) = colour(*kind);
        let fill = format!("fill=\"#{r:02X}{g:02X}{b:02X}\"");
        svg = svg.replace(&fill, &format!("class=\"exits-{}\" {fill}", kind.name()));
    }
    svg
}

/// Draws `snapshot` into `out` (a file opened before the guest ran).
pub fn write(snapshot: &TimelineSnapshot, out: &mut impl Write) -> Result<(), PlotError> {
    let svg = render(snapshot)?;
    out.write_all(svg.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn snapshot(series: Vec<(ExitKind, Vec<u64>)>, bucket_ns: u64) -> TimelineSnapshot {
        TimelineSnapshot {
            bucket: Duration::from_nanos(bucket_ns),
            series,
            phases: vec![
                ("image loaded".into(), Duration::from_micros(300)),
                ("guest entered".into(), Duration::from_micros(900)),
            ],
        }
    }

    #[test]
    fn test_plot_three_exits_has_a_class_per_kind() {
        let mut io = vec![0u64; 1000];
        io[990] = 2;
        let mut hlt = vec![0u64; 1000];
        hlt[995] = 1;
        let s = snapshot(vec![(ExitKind::IoOut, io), (ExitKind::Hlt, hlt)], 1024);
        let svg = render(&s).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains("class=\"exits-io_out\""));
        assert!(svg.contains("class=\"exits-hlt\""));
        assert!(!svg.contains("exits-mmio_read"));
        assert!(svg.contains("3 exits in"));
        assert!(svg.contains("guest entered"));
    }

    #[test]
    fn test_plot_of_ten_million_exits_is_bounded() {
        // 1024 buckets of 134 ms, ~9766 exits each: ten million in 137 s.
        let s = snapshot(vec![(ExitKind::IoOut, vec![9766; 1024])], 1 << 27);
        let svg = render(&s).unwrap();
        let rects = svg.matches("class=\"exits-io_out\"").count();
        assert!(rects <= MAX_BARS + 1, "{rects} bars");
        assert!(svg.len() < 200_000, "{} bytes", svg.len());
        assert!(svg.contains("10,000,384 exits"), "total in the title");
    }

    #[test]
    fn test_bars_merge_buckets_to_at_most_max_bars() {
        let s = snapshot(vec![(ExitKind::IoIn, vec![1; 1000])], 1000);
        let b = bars(&s);
        assert_eq!(b.series[0].1.len(), 1000usize.div_ceil(9));
        assert!(b.series[0].1.len() <= MAX_BARS);
        assert_eq!(b.series[0].1.iter().sum::<u64>(), 1000);
        assert!((b.width - 9e-6).abs() < 1e-12);
    }

    #[test]
    fn test_duration_text_units() {
        assert_eq!(duration_text(0.5e-3), "500 us");
        assert_eq!(duration_text(1.5e-3 * 2.0), "3 ms");
        assert_eq!(duration_text(137.4), "137.400 s");
    }
}
