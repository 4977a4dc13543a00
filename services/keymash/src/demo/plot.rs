//! The run's plot: mash level, drop %, quality and PSNR second by second, four stacked panels
//! sharing the time axis, as one PNG beside the contact sheet.
//!
//! Axes, grid, shading and lines are drawn with `plotters` into an RGB buffer. Its text needs a
//! font backend (`ttf` or `ab_glyph`) that pulls system font libraries onto the exhibit PC, so
//! plotters draws no text here: every label is set afterwards in keymash's own 5x7 bitmap font,
//! the one the countdown card, the HUD and the contact sheet use.

use std::ops::Range;
use std::path::Path;

use keymash_core::font::{for_each_lit_pixel, text_width, GLYPH_HEIGHT};
use plotters::backend::RGBPixel;
use plotters::prelude::*;

/// The plot's size in pixels.
pub(super) const WIDTH: usize = 1200;
pub(super) const HEIGHT: usize = 900;

/// Layout, in pixels. Every label is the font at [`SCALE`]: 10x14 pixels a glyph.
const SCALE: usize = 2;
const TEXT_HEIGHT: usize = GLYPH_HEIGHT * SCALE;
const MARGIN: usize = 16;
/// Room left of the panels for the y labels (five glyphs and a gap), right of them for air.
const LEFT: usize = 90;
const RIGHT: usize = 30;
/// The header line above the first panel.
const HEADER: usize = MARGIN + TEXT_HEIGHT + 22;
/// A panel's title line above its plot area, and the space between one plot area and the next
/// panel's title.
const TITLE_BAND: usize = TEXT_HEIGHT + 10;
const PANEL_GAP: usize = 18;
/// Below the last panel: the time labels, then the time axis' title.
const FOOTER: usize = 8 + TEXT_HEIGHT + 12 + TEXT_HEIGHT + MARGIN;
const PANELS: usize = 4;
const PLOT_HEIGHT: usize =
    (HEIGHT - HEADER - FOOTER - PANELS * TITLE_BAND - (PANELS - 1) * PANEL_GAP) / PANELS;
// Tall enough for six y labels of 14 pixels with room between them.
const _: () = assert!(PLOT_HEIGHT >= 150);

/// At most this many time ticks and y intervals, so their labels never crowd each other.
const MAX_TIME_TICKS: usize = 12;
const MAX_Y_STEPS: usize = 5;
/// Line width of the series; at 3 pixels a line has a solid core plotters does not blend.
const LINE_WIDTH: u32 = 3;
/// Air inside a plot area around the data, as a share of the axis: a line at 0 or at the
/// maximum is drawn whole, not half under the frame.
const Y_AIR: f64 = 0.06;
const X_AIR: f64 = 0.01;
/// The colour swatch left of a panel's title, which ties the title to its line.
const SWATCH: (usize, usize) = (20, 4);
/// Radius of the dot a lone point (missing values either side) is drawn as.
const DOT_RADIUS: i32 = 4;

const PAGE: RGBColor = RGBColor(246, 246, 246);
const PLOT_BACKGROUND: RGBColor = RGBColor(255, 255, 255);
const GRID: RGBColor = RGBColor(226, 226, 226);
const FRAME: RGBColor = RGBColor(150, 150, 150);
const INK: [u8; 3] = [33, 33, 33];
const MUTED: [u8; 3] = [110, 110, 110];

/// One second of the run, as the demo's table shows it; any figure may be missing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    /// Mash level, 0 to 1.
    pub mash: Option<f64>,
    /// Percent of video packets the eBPF filter dropped.
    pub drop_percent: Option<f64>,
    /// Codec quality, 1 to 100.
    pub quality: Option<f64>,
    /// PSNR in dB of the displayed pictures against the pictures sent.
    pub psnr: Option<f64>,
}

/// The four panels, top to bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Mash,
    Drop,
    Quality,
    Psnr,
}

impl Metric {
    const ALL: [Metric; PANELS] = [Metric::Mash, Metric::Drop, Metric::Quality, Metric::Psnr];

    /// The figure, if there is one and it is a number (a NaN would draw a line to nowhere).
    fn value(self, sample: &Sample) -> Option<f64> {
        match self {
            Metric::Mash => sample.mash,
            Metric::Drop => sample.drop_percent,
            Metric::Quality => sample.quality,
            Metric::Psnr => sample.psnr,
        }
        .filter(|v| v.is_finite())
    }

    /// The panel's title: name and unit first (the font has capitals only, no brackets).
    fn title(self) -> &'static str {
        match self {
            Metric::Mash => "MASH LEVEL 0-1: HOW HARD VISITORS MASH",
            Metric::Drop => "DROP %: VIDEO PACKETS THE EBPF FILTER DROPPED",
            Metric::Quality => "QUALITY 1-100: WHAT THE ENCODER CODES WITH",
            Metric::Psnr => "PSNR DB: LUMA OF THE PICTURES SHOWN AGAINST THOSE SENT",
        }
    }

    fn colour(self) -> RGBColor {
        match self {
            Metric::Mash => RGBColor(0, 140, 60),
            Metric::Drop => RGBColor(205, 45, 35),
            Metric::Quality => RGBColor(30, 90, 200),
            Metric::Psnr => RGBColor(135, 55, 170),
        }
    }

    /// Decimals of the minimum, mean and maximum in the title line.
    fn decimals(self) -> usize {
        match self {
            Metric::Mash => 2,
            Metric::Drop | Metric::Psnr => 1,
            Metric::Quality => 0,
        }
    }

    /// The y axis for `values`: fixed where the figure has a fixed range, so runs compare at a
    /// glance; from the data (on round numbers) where it has none.
    fn axis(self, values: &[f64]) -> Axis {
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        match self {
            Metric::Mash => Axis::new(0.0, 1.0, 0.25),
            Metric::Quality => Axis::new(0.0, 100.0, 25.0),
            // From no drop; at least 0-10 so a run without loss shows a flat line at the bottom.
            Metric::Drop => Axis::fitting(0.0, max.clamp(10.0, 100.0)),
            Metric::Psnr if values.is_empty() => Axis::new(10.0, 40.0, 10.0),
            // At least 5 dB tall: a flat PSNR is a line, not a panel of noise.
            Metric::Psnr => Axis::fitting(min, max.max(min + 5.0)),
        }
    }
}

/// A y axis: its range and the step of its grid lines and labels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
}

impl Axis {
    fn new(lo: f64, hi: f64, step: f64) -> Axis {
        Axis { lo, hi, step }
    }

    /// The smallest range on multiples of a round step that holds `lo..=hi`.
    fn fitting(lo: f64, hi: f64) -> Axis {
        // At least one unit tall: a flat series still gets an axis around it.
        let step = nice_step((hi - lo).max(1.0), MAX_Y_STEPS, VALUE_STEPS);
        let lo = (lo / step).floor() * step;
        let mut hi = (hi / step).ceil() * step;
        if hi <= lo {
            hi = lo + step;
        }
        Axis { lo, hi, step }
    }

    fn ticks(&self) -> Vec<f64> {
        ticks(self.lo, self.hi, self.step)
    }

    /// Decimals that show every tick exactly (0.25 needs two, 2.5 one, 10 none).
    fn decimals(&self) -> usize {
        (0..3)
            .find(|&d| {
                let scaled = self.step * 10f64.powi(d as i32);
                (scaled - scaled.round()).abs() < 1e-6
            })
            .unwrap_or(3)
    }

    /// The values the plot area spans: the axis and some air above and below.
    fn view(&self) -> Range<f64> {
        let air = (self.hi - self.lo) * Y_AIR;
        self.lo - air..self.hi + air
    }

    fn clamp(&self, v: f64) -> f64 {
        v.clamp(self.lo, self.hi)
    }
}

/// Round steps for values: 1, 2, 2.5 or 5 times a power of ten.
const VALUE_STEPS: &[f64] = &[1.0, 2.0, 2.5, 5.0, 10.0];
/// Round steps for seconds, whose labels have no decimals: 1, 2 or 5 times a power of ten.
const TIME_STEPS: &[f64] = &[1.0, 2.0, 5.0, 10.0];

/// The smallest round step (one of `multiples` times a power of ten) dividing `span` into at
/// most `max_steps`.
fn nice_step(span: f64, max_steps: usize, multiples: &[f64]) -> f64 {
    let raw = (span / max_steps as f64).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    multiples
        .iter()
        .map(|m| m * magnitude)
        .find(|&step| step >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

/// `lo`, `lo + step`, ... up to `hi` inclusive (computed by index, so no drift accumulates).
fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let n = ((hi - lo) / step + 1e-6).floor() as usize;
    (0..=n).map(|i| lo + i as f64 * step).collect()
}

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

/// Panel `i`'s plot area (without its title line).
fn plot_rect(i: usize) -> Rect {
    Rect {
        x: LEFT,
        y: HEADER + i * (TITLE_BAND + PLOT_HEIGHT + PANEL_GAP) + TITLE_BAND,
        w: WIDTH - LEFT - RIGHT,
        h: PLOT_HEIGHT,
    }
}

/// The time a plot area spans for a run of `t_max` seconds: from the start, with some air
/// after the last second.
fn time_view(t_max: f64) -> Range<f64> {
    0.0..t_max * (1.0 + X_AIR)
}

/// Pixel column of time `t` in a run of `t_max` seconds, as plotters maps it (the last pixel
/// column of the plot area is the end of [`time_view`]): where the time labels go.
fn x_pixel(t: f64, t_max: f64) -> usize {
    let plot = plot_rect(0);
    let view = time_view(t_max);
    plot.x
        + ((plot.w - 1) as f64 * (t - view.start) / (view.end - view.start) + 1e-3).floor() as usize
}

/// Pixel row of `v` in panel `i` on `axis`, as plotters maps it (the first row is the top of
/// [`Axis::view`]): where the y labels go.
fn y_pixel(i: usize, v: f64, axis: &Axis) -> usize {
    let plot = plot_rect(i);
    let view = axis.view();
    let from_bottom =
        ((plot.h - 1) as f64 * (v - view.start) / (view.end - view.start) + 1e-3).floor();
    plot.y + plot.h - 1 - from_bottom as usize
}

/// The runs of consecutive samples that have `metric`: a missing figure ends a run, so the
/// line has a gap there rather than a drop to zero.
fn runs(samples: &[Sample], metric: Metric, axis: &Axis) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for sample in samples {
        match metric.value(sample) {
            Some(v) => current.push((sample.t, axis.clamp(v))),
            None if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// The run's plot as RGB pixels, [`WIDTH`] x [`HEIGHT`], rows packed. `samples` are the run's
/// seconds in order.
pub(super) fn draw(samples: &[Sample]) -> anyhow::Result<Vec<u8>> {
    let t_max = samples
        .iter()
        .map(|s| s.t)
        .filter(|t| t.is_finite())
        .fold(1.0, f64::max);
    let time_step = nice_step(t_max, MAX_TIME_TICKS, TIME_STEPS).max(1.0);
    let time_ticks = ticks(0.0, t_max, time_step);
    let axes = Metric::ALL.map(|metric| {
        let values: Vec<f64> = samples.iter().filter_map(|s| metric.value(s)).collect();
        (metric.axis(&values), values)
    });

    let mut rgb = vec![0u8; WIDTH * HEIGHT * 3];
    draw_charts(&mut rgb, samples, t_max, &time_ticks, &axes)
        .map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;

    let mut page = Page { rgb: &mut rgb };
    page.text(LEFT, MARGIN, "KEYMASH DEMO: THE RUN SECOND BY SECOND", INK);
    page.text_right(
        WIDTH - RIGHT,
        MARGIN,
        "ONE POINT A SECOND - A GAP: NO FIGURE THAT SECOND",
        MUTED,
    );
    for (i, (metric, (axis, values))) in Metric::ALL.iter().zip(&axes).enumerate() {
        let plot = plot_rect(i);
        let title_y = plot.y - TITLE_BAND;
        page.text(plot.x, title_y, metric.title(), INK);
        let colour = metric.colour();
        page.fill(
            Rect {
                x: plot.x - 10 - SWATCH.0,
                y: title_y + (TEXT_HEIGHT - SWATCH.1) / 2,
                w: SWATCH.0,
                h: SWATCH.1,
            },
            [colour.0, colour.1, colour.2],
        );
        if values.is_empty() {
            let note = "NO FIGURE IN THIS RUN";
            page.text(
                plot.x + (plot.w - text_width(note) * SCALE) / 2,
                plot.y + (plot.h - TEXT_HEIGHT) / 2,
                note,
                MUTED,
            );
        } else {
            let d = metric.decimals();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            page.text_right(
                plot.x + plot.w,
                title_y,
                &format!("MIN {min:.d$}  MEAN {mean:.d$}  MAX {max:.d$}"),
                MUTED,
            );
        }
        let d = axis.decimals();
        for v in axis.ticks() {
            // Centred on its grid line.
            let y = y_pixel(i, v, axis).saturating_sub(TEXT_HEIGHT / 2);
            page.text_right(plot.x - 10, y, &format!("{v:.d$}"), INK);
        }
    }
    let last = plot_rect(PANELS - 1);
    let labels_y = last.y + last.h + 8;
    for &t in &time_ticks {
        let label = format!("{t:.0}");
        let w = text_width(&label) * SCALE;
        let x = x_pixel(t, t_max).saturating_sub(w / 2).min(WIDTH - w);
        page.text(x, labels_y, &label, INK);
    }
    let axis_title = "SECONDS SINCE THE RUN STARTED";
    page.text(
        last.x + (last.w - text_width(axis_title) * SCALE) / 2,
        labels_y + TEXT_HEIGHT + 12,
        axis_title,
        INK,
    );
    Ok(rgb)
}

/// The plotters part: backgrounds, grid, frames, the mash level's shading and the lines.
fn draw_charts(
    rgb: &mut [u8],
    samples: &[Sample],
    t_max: f64,
    time_ticks: &[f64],
    axes: &[(Axis, Vec<f64>); PANELS],
) -> Result<(), String> {
    let size = (WIDTH as u32, HEIGHT as u32);
    let backend =
        BitMapBackend::<RGBPixel>::with_buffer_and_format(rgb, size).map_err(|e| e.to_string())?;
    let root = backend.into_drawing_area();
    root.fill(&PAGE).map_err(|e| e.to_string())?;
    for (i, (metric, (axis, _))) in Metric::ALL.iter().zip(axes).enumerate() {
        let plot = plot_rect(i);
        let area = root.clone().shrink(
            (plot.x as i32, plot.y as i32),
            (plot.w as u32, plot.h as u32),
        );
        area.fill(&PLOT_BACKGROUND).map_err(|e| e.to_string())?;
        let (time, view) = (time_view(t_max), axis.view());
        let mut chart = ChartBuilder::on(&area)
            .build_cartesian_2d(time.clone(), view.clone())
            .map_err(|e| e.to_string())?;
        let runs = runs(samples, *metric, axis);
        if *metric == Metric::Mash {
            // Shaded down to zero: the mashing reads as a block of effort at a glance.
            let fill = metric.colour().mix(0.18).filled();
            chart
                .draw_series(runs.iter().filter(|run| run.len() > 1).map(|run| {
                    let mut outline = Vec::with_capacity(run.len() + 2);
                    outline.push((run[0].0, axis.lo));
                    outline.extend_from_slice(run);
                    outline.push((run[run.len() - 1].0, axis.lo));
                    Polygon::new(outline, fill)
                }))
                .map_err(|e| e.to_string())?;
        }
        let grid = time_ticks
            .iter()
            .map(|&t| vec![(t, axis.lo), (t, axis.hi)])
            .chain(axis.ticks().into_iter().map(|v| vec![(0.0, v), (t_max, v)]));
        chart
            .draw_series(grid.map(|line| PathElement::new(line, GRID)))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(time.start, view.start), (time.end, view.end)],
                FRAME,
            )))
            .map_err(|e| e.to_string())?;
        let line = metric.colour().stroke_width(LINE_WIDTH);
        for run in &runs {
            if let [point] = run.as_slice() {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        *point,
                        DOT_RADIUS,
                        metric.colour().filled(),
                    )))
                    .map_err(|e| e.to_string())?;
            } else {
                chart
                    .draw_series(LineSeries::new(run.iter().copied(), line))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    root.present().map_err(|e| e.to_string())
}

/// The finished chart, for the labels in keymash's font.
struct Page<'a> {
    rgb: &'a mut [u8],
}

impl Page<'_> {
    fn fill(&mut self, rect: Rect, colour: [u8; 3]) {
        for y in rect.y..rect.y + rect.h {
            for x in rect.x..rect.x + rect.w {
                self.put(x, y, colour);
            }
        }
    }

    fn put(&mut self, x: usize, y: usize, colour: [u8; 3]) {
        if x < WIDTH && y < HEIGHT {
            let at = (y * WIDTH + x) * 3;
            if let Some(px) = self.rgb.get_mut(at..at + 3) {
                px.copy_from_slice(&colour);
            }
        }
    }

    /// `text` with its top-left corner at (`x`, `y`).
    fn text(&mut self, x: usize, y: usize, text: &str, colour: [u8; 3]) {
        for_each_lit_pixel(text, |fx, fy| {
            for dy in 0..SCALE {
                for dx in 0..SCALE {
                    self.put(x + fx * SCALE + dx, y + fy * SCALE + dy, colour);
                }
            }
        });
    }

    /// `text` with its top-right corner at (`right`, `y`).
    fn text_right(&mut self, right: usize, y: usize, text: &str, colour: [u8; 3]) {
        let x = right.saturating_sub(text_width(text) * SCALE);
        self.text(x, y, text, colour);
    }
}

/// Draws the plot of `samples` and writes it to `path` as PNG.
pub(super) fn write(path: &Path, samples: &[Sample]) -> anyhow::Result<()> {
    let rgb = draw(samples)?;
    crate::png_file::write_png(path, WIDTH, HEIGHT, &rgb)
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use super::*;

    /// Panel `i` whole: its title line, its labels left of it and its plot area.
    fn panel_rect(i: usize) -> Rect {
        let plot = plot_rect(i);
        Rect {
            x: 0,
            y: plot.y - TITLE_BAND,
            w: WIDTH,
            h: TITLE_BAND + PLOT_HEIGHT,
        }
    }

    /// How many rows in `rows` hold a pixel of exactly `colour` in `columns`.
    fn rows_with(rgb: &[u8], colour: [u8; 3], columns: Range<usize>, rows: Range<usize>) -> usize {
        rows.filter(|&y| {
            columns
                .clone()
                .any(|x| rgb[(y * WIDTH + x) * 3..][..3] == colour)
        })
        .count()
    }

    fn rgb(colour: RGBColor) -> [u8; 3] {
        [colour.0, colour.1, colour.2]
    }

    /// A run like the demo's: idle, mashing, idle, every figure every second.
    fn run(seconds: u32) -> Vec<Sample> {
        (1..=seconds)
            .map(|t| {
                let mashing = (5..12).contains(&t);
                Sample {
                    t: f64::from(t),
                    mash: Some(if mashing { 0.9 } else { 0.0 }),
                    drop_percent: Some(if mashing { 0.5 } else { 40.0 }),
                    quality: Some(if mashing { 90.0 } else { 10.0 }),
                    psnr: Some(if mashing { 34.0 } else { 17.5 }),
                }
            })
            .collect()
    }

    /// Pixels of exactly `colour` inside `rect`.
    fn count(image: &[u8], colour: [u8; 3], rect: Rect) -> usize {
        (rect.y..rect.y + rect.h)
            .flat_map(|y| (rect.x..rect.x + rect.w).map(move |x| (x, y)))
            .filter(|&(x, y)| image[(y * WIDTH + x) * 3..][..3] == colour)
            .count()
    }

    #[test]
    fn the_plot_has_the_promised_size_and_four_panels_fit_in_it() {
        let image = draw(&run(15)).unwrap();
        assert_eq!(image.len(), WIDTH * HEIGHT * 3);
        let last = plot_rect(PANELS - 1);
        assert!(last.y + last.h + FOOTER <= HEIGHT);
        for i in 1..PANELS {
            let (above, below) = (panel_rect(i - 1), panel_rect(i));
            assert!(
                above.y + above.h < below.y,
                "panels {} and {i} overlap",
                i - 1
            );
        }
    }

    #[test]
    fn each_series_is_drawn_in_its_own_panel_and_in_no_other() {
        let image = draw(&run(15)).unwrap();
        for (i, metric) in Metric::ALL.iter().enumerate() {
            let colour = rgb(metric.colour());
            for panel in 0..PANELS {
                let n = count(&image, colour, panel_rect(panel));
                if panel == i {
                    assert!(n > 500, "{metric:?}: only {n} line pixels in its panel");
                } else {
                    assert_eq!(n, 0, "{metric:?}: {n} line pixels in panel {panel}");
                }
            }
        }
    }

    #[test]
    fn a_series_alone_draws_only_in_its_panel() {
        let samples: Vec<Sample> = run(15)
            .into_iter()
            .map(|s| Sample {
                quality: None,
                mash: None,
                drop_percent: None,
                ..s
            })
            .collect();
        let image = draw(&samples).unwrap();
        let colour = rgb(Metric::Psnr.colour());
        assert!(count(&image, colour, plot_rect(3)) > 500);
        for other in 0..3 {
            let plot = plot_rect(other);
            let lines = Metric::ALL
                .iter()
                .map(|m| count(&image, rgb(m.colour()), plot))
                .sum::<usize>();
            assert_eq!(lines, 0, "line pixels in the empty panel {other}");
        }
    }

    #[test]
    fn a_missing_figure_leaves_a_gap_not_a_line_to_zero() {
        let t_max = 20.0;
        let mut samples: Vec<Sample> = (1..=20)
            .map(|t| Sample {
                t: f64::from(t),
                quality: Some(60.0),
                ..Sample::default()
            })
            .collect();
        let whole = draw(&samples).unwrap();
        for s in &mut samples[7..13] {
            s.quality = None; // seconds 8 to 13
        }
        let gapped = draw(&samples).unwrap();
        let plot = plot_rect(2);
        // Strictly between the last point before the gap (7 s) and the first after (14 s),
        // away from the line's rounded width.
        let columns = x_pixel(7.0, t_max) + 4..x_pixel(14.0, t_max) - 3;
        let rows = plot.y..plot.y + plot.h;
        let colour = rgb(Metric::Quality.colour());
        assert!(rows_with(&whole, colour, columns.clone(), rows.clone()) > 0);
        assert_eq!(rows_with(&gapped, colour, columns, rows.clone()), 0);
        // Either side of the gap the line is there, at 60, not at zero.
        let axis = Axis::new(0.0, 100.0, 25.0);
        let at_60 = y_pixel(2, 60.0, &axis);
        let before = x_pixel(3.0, t_max)..x_pixel(6.0, t_max);
        assert!(rows_with(&gapped, colour, before.clone(), at_60 - 1..at_60 + 2) > 0);
        assert_eq!(
            rows_with(&gapped, colour, before, at_60 + 5..plot.y + plot.h),
            0
        );
    }

    #[test]
    fn a_lone_figure_between_gaps_is_a_dot() {
        let samples = [
            Sample {
                t: 1.0,
                ..Sample::default()
            },
            Sample {
                t: 5.0,
                psnr: Some(30.0),
                ..Sample::default()
            },
            Sample {
                t: 10.0,
                ..Sample::default()
            },
        ];
        let image = draw(&samples).unwrap();
        let x = x_pixel(5.0, 10.0);
        let colour = rgb(Metric::Psnr.colour());
        let plot = plot_rect(3);
        assert!(rows_with(&image, colour, x - 1..x + 2, plot.y..plot.y + plot.h) >= 5);
        assert_eq!(
            rows_with(&image, colour, plot.x..x - 5, plot.y..plot.y + plot.h),
            0
        );
    }

    /// Whether `text` is set in `colour` with its top-left corner at (`x`, `y`): every lit font
    /// pixel is there, and the one pixel of blank at the glyph's own top-left corner is not.
    fn text_at(image: &[u8], x: usize, y: usize, text: &str, colour: [u8; 3]) -> bool {
        let mut lit = 0;
        let mut all = true;
        for_each_lit_pixel(text, |fx, fy| {
            lit += 1;
            let (px, py) = (x + fx * SCALE, y + fy * SCALE);
            all &= image[(py * WIDTH + px) * 3..][..3] == colour;
        });
        lit > 0 && all
    }

    #[test]
    fn titles_y_ranges_and_time_labels_are_written() {
        let image = draw(&run(15)).unwrap();
        for (i, metric) in Metric::ALL.iter().enumerate() {
            let plot = plot_rect(i);
            assert!(
                text_at(&image, plot.x, plot.y - TITLE_BAND, metric.title(), INK),
                "{metric:?}'s title"
            );
        }
        // The y ranges: mash 0.00 to 1.00, quality 0 to 100, drop from 0, PSNR on round dB.
        let label_at = |i: usize, v: f64, text: &str| {
            let plot = plot_rect(i);
            let axis = match i {
                0 => Axis::new(0.0, 1.0, 0.25),
                2 => Axis::new(0.0, 100.0, 25.0),
                _ => unreachable!("fixed axes only"),
            };
            let y = y_pixel(i, v, &axis)
                .saturating_sub(TEXT_HEIGHT / 2)
                .clamp(plot.y - TEXT_HEIGHT / 2, plot.y + plot.h - TEXT_HEIGHT / 2);
            text_at(&image, plot.x - 10 - text_width(text) * SCALE, y, text, INK)
        };
        assert!(label_at(0, 1.0, "1.00"), "mash maximum");
        assert!(label_at(0, 0.0, "0.00"), "mash minimum");
        assert!(label_at(2, 100.0, "100"), "quality maximum");
        assert!(label_at(2, 0.0, "0"), "quality minimum");
        // The drop axis holds 40% on round numbers; the PSNR axis holds 17.5 to 34 dB.
        assert_eq!(Metric::Drop.axis(&[0.5, 40.0]), Axis::new(0.0, 40.0, 10.0));
        assert_eq!(Metric::Psnr.axis(&[17.5, 34.0]), Axis::new(15.0, 35.0, 5.0));
        // Time labels 0, 2, ... 14 under the last panel (15 s: at most 12 ticks, step 2).
        let last = plot_rect(PANELS - 1);
        for t in [0.0, 8.0, 14.0] {
            let label = format!("{t:.0}");
            let w = text_width(&label) * SCALE;
            let x = x_pixel(t, 15.0) - w / 2;
            assert!(
                text_at(&image, x, last.y + last.h + 8, &label, INK),
                "time label {label}"
            );
        }
    }

    #[test]
    fn a_panel_without_any_figure_says_so() {
        let samples: Vec<Sample> = run(15)
            .into_iter()
            .map(|s| Sample {
                drop_percent: None,
                ..s
            })
            .collect();
        let image = draw(&samples).unwrap();
        let plot = plot_rect(1);
        let note = "NO FIGURE IN THIS RUN";
        assert!(text_at(
            &image,
            plot.x + (plot.w - text_width(note) * SCALE) / 2,
            plot.y + (plot.h - TEXT_HEIGHT) / 2,
            note,
            MUTED
        ));
    }

    #[test]
    fn round_steps_and_axes() {
        assert_eq!(nice_step(15.0, 12, TIME_STEPS), 2.0);
        assert_eq!(nice_step(40.0, 12, TIME_STEPS), 5.0);
        assert_eq!(nice_step(30.0, 12, TIME_STEPS), 5.0);
        assert_eq!(nice_step(30.0, 12, VALUE_STEPS), 2.5);
        assert_eq!(nice_step(600.0, 12, TIME_STEPS), 50.0);
        assert_eq!(nice_step(1.0, 4, VALUE_STEPS), 0.25);
        assert_eq!(ticks(0.0, 1.0, 0.25), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(Axis::new(0.0, 1.0, 0.25).decimals(), 2);
        assert_eq!(Axis::new(0.0, 100.0, 25.0).decimals(), 0);
        let flat = Axis::fitting(12.3, 12.3);
        assert!(
            flat.lo <= 12.3 && flat.hi >= 12.3 && flat.hi > flat.lo,
            "{flat:?}"
        );
        // A flat PSNR still gets a 5 dB axis around it.
        let flat = Metric::Psnr.axis(&[48.0, 48.0]);
        assert!(flat.lo <= 48.0 && flat.hi >= 53.0, "{flat:?}");
        // A drop above 100% (it cannot be) does not stretch the axis.
        assert_eq!(Metric::Drop.axis(&[130.0]).hi, 100.0);
    }

    #[test]
    fn the_png_decodes_to_the_same_pixels() {
        let samples = run(15);
        let path = std::env::temp_dir().join(format!("keymash-plot-{}.png", std::process::id()));
        write(&path, &samples).unwrap();
        let decoder = png::Decoder::new(std::fs::File::open(&path).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!((info.width, info.height), (WIDTH as u32, HEIGHT as u32));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(buf[..info.buffer_size()], draw(&samples).unwrap()[..]);
    }
}
