//! A scenario's timeline as an SVG (plotters): the share of requests each member answered per
//! 100 ms, the failed requests of each 100 ms, and the scenario's events as vertical lines.

use std::path::Path;
use std::time::Duration;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::measure::{parse_health, Health};
use crate::figures::{self, By, Window};
use crate::load::Sample;

/// The width of a timeline bucket.
pub const BUCKET: Duration = Duration::from_millis(100);

const MEMBER_COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
const FAILED: RGBColor = RGBColor(214, 39, 40);

/// What one timeline shows.
pub struct Timeline<'a> {
    pub title: &'a str,
    pub members: &'a [&'a str],
    pub samples: &'a [&'a Sample],
    pub events: &'a [(Duration, String)],
    /// The plugin's passive-health log lines, when they arrived.
    pub health: &'a [(Duration, String)],
    pub end: Duration,
}

/// Draws `timeline` into the SVG file `path`.
pub fn draw(path: &Path, timeline: &Timeline<'_>) -> anyhow::Result<()> {
    let windows = figures::windows(
        timeline.samples,
        timeline.members,
        By::Served,
        BUCKET,
        timeline.end,
    );
    let root = SVGBackend::new(path, (1200, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(timeline.title, ("sans-serif", 20))?;
    let (strip, area) = root.split_vertically(28);
    legend(&strip, timeline.members)?;
    let mut chart = ChartBuilder::on(&area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..timeline.end.as_secs_f64(), 0f64..112f64)?;
    chart
        .configure_mesh()
        .x_desc("time since the traffic started (s)")
        .y_desc("% of the requests sent in each 100 ms")
        .draw()?;
    let mid = |w: &Window| (w.start + BUCKET / 2).as_secs_f64();
    let sent: Vec<&Window> = windows.iter().filter(|w| w.requests > 0).collect();
    for i in 0..timeline.members.len() {
        let style = member_color(i).stroke_width(2);
        chart.draw_series(LineSeries::new(
            sent.iter().map(|w| (mid(w), w.shares[i])),
            style,
        ))?;
    }
    let failed = sent.iter().filter(|w| w.failed > 0).map(|w| {
        let percent = 100.0 * w.failed as f64 / w.requests as f64;
        Cross::new((mid(w), percent), 5, FAILED.stroke_width(2))
    });
    chart.draw_series(failed)?;
    let health = timeline
        .health
        .iter()
        .filter_map(|(at, line)| Some((at.as_secs_f64(), parse_health(line)?)));
    for (x, health) in health {
        let at = (x, 3.0);
        match health {
            Health::Ejected { .. } => {
                chart.draw_series([TriangleMarker::new(at, 7, BLACK.filled())])?
            }
            Health::Recovered { .. } => {
                chart.draw_series([Circle::new(at, 5, BLACK.stroke_width(2))])?
            }
        };
    }
    for (i, (at, label)) in timeline.events.iter().enumerate() {
        let x = at.as_secs_f64();
        let line = DashedLineSeries::new([(x, 0.0), (x, 112.0)], 6, 4, BLACK.mix(0.5).into());
        chart.draw_series(line)?;
        // Staggered so the labels of close events do not overlap.
        let y = 110.0 - 4.0 * (i % 3) as f64;
        chart.draw_series(std::iter::once(Text::new(
            label.clone(),
            (x, y),
            ("sans-serif", 12),
        )))?;
    }
    root.present()?;
    Ok(())
}

fn member_color(index: usize) -> RGBColor {
    MEMBER_COLORS[index % MEMBER_COLORS.len()]
}

/// One line of legend above the chart, where it hides no data.
fn legend(strip: &DrawingArea<SVGBackend<'_>, Shift>, members: &[&str]) -> anyhow::Result<()> {
    let font = ("sans-serif", 13).into_font();
    let (y, mut x) = (14, 70);
    let label = |x: i32, text: String| -> anyhow::Result<i32> {
        let width = i32::try_from(text.len()).unwrap_or(0) * 7;
        strip.draw(&Text::new(text, (x, y - 7), font.clone()))?;
        Ok(x + width + 28)
    };
    for (i, member) in members.iter().enumerate() {
        let line = PathElement::new(vec![(x, y), (x + 24, y)], member_color(i).stroke_width(2));
        strip.draw(&line)?;
        x = label(x + 30, format!("answered by {member}"))?;
    }
    let cross = Cross::new((x + 10, y), 5, FAILED.stroke_width(2));
    strip.draw(&cross)?;
    let x = label(x + 24, "failed (% of the 100 ms)".to_owned())?;
    strip.draw(&PathElement::new(vec![(x, y), (x + 24, y)], BLACK.mix(0.5)))?;
    let x = label(x + 30, "scenario event".to_owned())?;
    strip.draw(&TriangleMarker::new((x, y), 7, BLACK.filled()))?;
    let x = label(x + 12, "ejection".to_owned())?;
    strip.draw(&Circle::new((x, y), 5, BLACK.stroke_width(2)))?;
    label(x + 12, "recovery (plugin log)".to_owned())?;
    Ok(())
}
