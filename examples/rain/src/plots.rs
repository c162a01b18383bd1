//! SVG plots (plotters), rendered to strings so files can be written
//! atomically.
//!
//! Every chart has a header above the plot: the title, a line saying
//! which run made it, and the legend, so that no legend ever covers a
//! curve. Fonts are sized for a 720 x 480 canvas viewed at its size.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// The first four are the colours the binary plots always used; the rest
/// (matplotlib's tab10) serve `rain activation` with several names.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(128, 128, 128),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const SIZE: (u32, u32) = (720, 480);
// plotters' SVG backend writes each font size divided by 1.24: these give
// about 22 px for the title and 14 to 15 px for the rest, in the file.
const TITLE_PX: u32 = 27;
const TEXT_PX: u32 = 17;
const TICK_PX: u32 = 17;
const AXIS_PX: u32 = 19;
/// A rough width of one character of the text font, to lay out the
/// legend without measuring.
const CHAR_PX: i32 = 8;

/// One named series of (x, y) points.
pub struct Series<'a> {
    pub name: String,
    pub points: &'a [(f64, f64)],
    /// The colour's index (default: the series' own index).
    pub color: Option<usize>,
    /// Drawn dashed.
    pub dashed: bool,
    /// Drawn thin and pale behind the others, and left out of the y range
    /// (what lies outside it is not drawn).
    pub faint: bool,
}

impl<'a> Series<'a> {
    /// A solid line in the next colour.
    pub fn new(name: impl Into<String>, points: &'a [(f64, f64)]) -> Self {
        Series { name: name.into(), points, color: None, dashed: false, faint: false }
    }
}

/// How a chart's frame is drawn.
pub struct Frame<'a> {
    pub title: &'a str,
    /// Which run made the chart (configuration, seed); may hold `\n`.
    pub run: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// Both axes fixed to [0, 1].
    pub unit_square: bool,
    /// Whole numbers on the x axis (update or epoch counts).
    pub integer_x: bool,
    /// When the values' full range is over ten times the span of their
    /// 5th to 95th percentiles (a pole, such as 1/x at 0), the y range is
    /// that span, and the header says the rest is clipped.
    pub robust_y: bool,
    /// The y range from the points at or after this x only (a training
    /// curve's steady part, not its first updates); the header says how
    /// high the earlier points go.
    pub y_from: Option<f64>,
}

impl<'a> Frame<'a> {
    /// A frame with automatic ranges.
    pub fn new(title: &'a str, run: &'a str, x_label: &'a str, y_label: &'a str) -> Self {
        Frame {
            title,
            run,
            x_label,
            y_label,
            unit_square: false,
            integer_x: false,
            robust_y: false,
            y_from: None,
        }
    }
}

/// The smallest and largest finite value of `values`, padded by 5%;
/// `robust`: the 5th and 95th percentiles instead (padded by 20%) when the
/// full range is over ten times theirs; and whether values are left out.
fn range(mut values: Vec<f64>, robust: bool) -> ((f64, f64), bool) {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return ((0.0, 1.0), false);
    }
    values.sort_by(f64::total_cmp);
    let (min, max) = (values[0], values[values.len() - 1]);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    let (p5, p95) = (at(0.05), at(0.95));
    let (lo, hi, pad) = if robust && values.len() >= 20 && (max - min) > 10.0 * (p95 - p5) {
        (p5, p95, 0.20)
    } else {
        (min, max, 0.05)
    };
    let span = hi - lo;
    let pad = (span * pad).max(if span == 0.0 { 0.5f64.max(lo.abs() * 0.1) } else { 1e-12 });
    let (lo, hi) = (lo - pad, hi + pad);
    ((lo, hi), min < lo || max > hi)
}

/// A tick label with as many decimals as the axis' span needs (never all
/// `0.0` for small values), scientific notation for large ones.
fn tick(v: f64, span: f64, integer: bool) -> String {
    if integer {
        // Only whole numbers get a label: on a short axis plotters puts
        // ticks at halves too.
        return if (v - v.round()).abs() < 1e-9 { format!("{}", v.round() as i64) } else { String::new() };
    }
    if v == 0.0 || v.abs() < span * 1e-9 {
        return "0".into();
    }
    if v.abs() >= 1e5 || span >= 1e5 {
        return format!("{v:.2e}");
    }
    let decimals = if span >= 10.0 {
        0
    } else if span >= 1.0 {
        1
    } else {
        ((-span.log10()).ceil() as usize + 1).min(10)
    };
    format!("{v:.decimals$}")
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One legend entry: its text, colour and dash.
struct Key {
    name: String,
    color: RGBColor,
    dashed: bool,
    band: bool,
}

/// Draws the header (title, run lines, legend, wrapped to the width) and
/// returns the area left for the plot.
fn header<'b>(
    root: &DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    run: &[String],
    keys: &[Key],
) -> Result<DrawingArea<SVGBackend<'b>, Shift>, String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let width = SIZE.0 as i32 - 24;
    // The legend's rows: entries laid out left to right, wrapped.
    let mut rows: Vec<Vec<(i32, &Key)>> = vec![Vec::new()];
    let mut x = 0;
    for k in keys {
        let w = 26 + CHAR_PX * k.name.chars().count() as i32 + 18;
        if x > 0 && x + w > width {
            rows.push(Vec::new());
            x = 0;
        }
        rows.last_mut().expect("a row").push((x, k));
        x += w;
    }
    rows.retain(|r| !r.is_empty());
    let line = TEXT_PX as i32 + 6;
    let height = 12 + TITLE_PX as i32 + 8 + line * (run.len() + rows.len()) as i32 + 4;
    let (top, rest) = root.split_vertically(height as u32);
    let title_style = TextStyle::from(("sans-serif", TITLE_PX).into_font()).color(&BLACK);
    top.draw(&Text::new(title.to_string(), (12, 10), title_style)).map_err(e)?;
    let text = TextStyle::from(("sans-serif", TEXT_PX).into_font());
    let mut y = 12 + TITLE_PX as i32 + 8;
    for r in run {
        top.draw(&Text::new(r.clone(), (12, y), text.color(&RGBColor(90, 90, 90)))).map_err(e)?;
        y += line;
    }
    for row in rows {
        for (x0, k) in row {
            let (x, mid) = (12 + x0, y + TEXT_PX as i32 / 2);
            if k.band {
                top.draw(&Rectangle::new([(x, mid - 5), (x + 20, mid + 5)], k.color.mix(0.25).filled()))
                    .map_err(e)?;
            }
            let stroke = k.color.stroke_width(3);
            if k.dashed {
                top.draw(&PathElement::new(vec![(x, mid), (x + 8, mid)], stroke)).map_err(e)?;
                top.draw(&PathElement::new(vec![(x + 12, mid), (x + 20, mid)], stroke)).map_err(e)?;
            } else {
                top.draw(&PathElement::new(vec![(x, mid), (x + 20, mid)], stroke)).map_err(e)?;
            }
            top.draw(&Text::new(k.name.clone(), (x + 26, y), text.color(&BLACK))).map_err(e)?;
        }
        y += line;
    }
    Ok(rest)
}

/// The plot's axes and mesh in `area`.
fn axes<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    frame: &Frame<'_>,
    xr: (f64, f64),
    yr: (f64, f64),
) -> Result<Chart<'a, 'b>, String> {
    let mut chart = ChartBuilder::on(area)
        .margin_left(12)
        .margin_right(24)
        .margin_bottom(8)
        .margin_top(4)
        .x_label_area_size(48)
        .y_label_area_size(84)
        .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
        .map_err(|e| e.to_string())?;
    let (xs, ys) = (xr.1 - xr.0, yr.1 - yr.0);
    let integer_x = frame.integer_x;
    let fx = move |v: &f64| tick(*v, xs, integer_x);
    let fy = move |v: &f64| tick(*v, ys, false);
    chart
        .configure_mesh()
        .x_desc(frame.x_label)
        .y_desc(frame.y_label)
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .x_labels(8)
        .y_labels(8)
        .label_style(("sans-serif", TICK_PX))
        .axis_desc_style(("sans-serif", AXIS_PX))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(205, 205, 205))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(chart)
}

/// The run lines of the header, with `note` (what the y axis leaves out).
fn run_lines(frame: &Frame<'_>, note: Option<String>) -> Vec<String> {
    let mut lines: Vec<String> = frame.run.lines().filter(|l| !l.is_empty()).map(String::from).collect();
    lines.extend(note);
    lines
}

/// The stretches of `points` to draw: finite, and inside `yr` (points
/// outside break the line), or clamped into it (`clamp`).
fn segments(points: &[(f64, f64)], yr: (f64, f64), clamp: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for &(x, y) in points {
        let inside = y >= yr.0 && y <= yr.1;
        if x.is_finite() && y.is_finite() && (inside || clamp) {
            out.last_mut().expect("a segment").push((x, y.clamp(yr.0, yr.1)));
        } else if !out.last().expect("a segment").is_empty() {
            out.push(Vec::new());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// A line chart.
pub fn lines(frame: &Frame<'_>, series: &[Series<'_>]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let color = |i: usize, s: &Series<'_>| COLORS[s.color.unwrap_or(i) % COLORS.len()];
        let ((xr, yr), note) = if frame.unit_square {
            (((0.0, 1.0), (0.0, 1.0)), None)
        } else {
            let xs = series.iter().flat_map(|s| s.points.iter().filter(|p| p.1.is_finite()).map(|p| p.0));
            let from = frame.y_from.unwrap_or(f64::NEG_INFINITY);
            let bold = || series.iter().filter(|s| !s.faint).flat_map(|s| s.points.iter());
            let (yr, clipped) = range(bold().filter(|p| p.0 >= from).map(|p| p.1).collect(), frame.robust_y);
            let (xr, _) = range(xs.collect(), false);
            // A whole-number axis starts at its first value, without padding below it.
            let xr = if frame.integer_x { (xr.0.max(0.0), xr.1) } else { xr };
            let early = bold()
                .filter(|p| p.0 < from && p.1.is_finite())
                .map(|p| p.1)
                .fold(f64::NEG_INFINITY, f64::max);
            let note = if clipped {
                Some(
                    "y axis: the 5th to 95th percentile of the values (padded); the rest is clipped"
                        .to_string(),
                )
            } else if early > yr.1 {
                Some(format!(
                    "y axis fitted from {} {} on; the first values reach {}, above it",
                    frame.x_label,
                    tick(from, xr.1 - xr.0, frame.integer_x),
                    tick(early, yr.1 - yr.0, false)
                ))
            } else {
                None
            };
            ((xr, yr), note)
        };
        let keys: Vec<Key> = series
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.name.is_empty())
            .map(|(i, s)| Key { name: s.name.clone(), color: color(i, s), dashed: s.dashed, band: false })
            .collect();
        let area = header(&root, frame.title, &run_lines(frame, note), &keys)?;
        let mut chart = axes(&area, frame, xr, yr)?;
        // Faint series first, behind the others.
        let order = series
            .iter()
            .enumerate()
            .filter(|(_, s)| s.faint)
            .chain(series.iter().enumerate().filter(|(_, s)| !s.faint));
        for (i, s) in order {
            let c = color(i, s);
            let style = if s.faint { c.mix(0.15).stroke_width(1) } else { c.stroke_width(2) };
            for seg in segments(s.points, yr, false) {
                let drawn = if s.dashed {
                    chart.draw_series(DashedLineSeries::new(seg, 6, 4, style))
                } else {
                    chart.draw_series(LineSeries::new(seg, style))
                };
                drawn.map_err(|e| e.to_string())?;
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// A curve with a band around it: the mean of several runs, and their
/// lowest and highest values at each x.
pub struct Band {
    pub name: String,
    pub mean: Vec<(f64, f64)>,
    pub lo: Vec<(f64, f64)>,
    pub hi: Vec<(f64, f64)>,
}

/// A line chart of bands: each entry's mean as a line, its band shaded in
/// the same colour. The y range follows the curves from their second
/// point on (the first epoch's cost, far above the rest, would squash
/// them), clamping what lies above.
pub fn bands(frame: &Frame<'_>, bands: &[Band]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let xs: Vec<f64> = bands.iter().flat_map(|b| b.mean.iter().map(|p| p.0)).collect();
        let later =
            |v: &[(f64, f64)]| v.iter().skip(usize::from(v.len() > 2)).map(|p| p.1).collect::<Vec<_>>();
        let ys: Vec<f64> = bands.iter().flat_map(|b| later(&b.lo).into_iter().chain(later(&b.hi))).collect();
        let (yr, _) = range(ys, false);
        let (xr, _) = range(xs, false);
        let xr = if frame.integer_x { (xr.0.max(0.0), xr.1) } else { xr };
        let keys: Vec<Key> = bands
            .iter()
            .enumerate()
            .map(|(i, b)| Key {
                name: b.name.clone(),
                color: COLORS[i % COLORS.len()],
                dashed: false,
                band: true,
            })
            .collect();
        let area = header(&root, frame.title, &run_lines(frame, None), &keys)?;
        let mut chart = axes(&area, frame, xr, yr)?;
        for (i, b) in bands.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let clamp = |p: &(f64, f64)| (p.0, p.1.clamp(yr.0, yr.1));
            let outline: Vec<(f64, f64)> =
                b.lo.iter().chain(b.hi.iter().rev()).filter(|p| p.1.is_finite()).map(clamp).collect();
            chart
                .draw_series(std::iter::once(Polygon::new(outline, color.mix(0.18).filled())))
                .map_err(|e| e.to_string())?;
            for seg in segments(&b.mean, yr, true) {
                chart.draw_series(LineSeries::new(seg, color.stroke_width(2))).map_err(|e| e.to_string())?;
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
