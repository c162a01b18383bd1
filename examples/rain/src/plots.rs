//! SVG plots (plotters), rendered to strings so files can be written
//! atomically.

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

/// One named series of (x, y) points.
pub struct Series<'a> {
    pub name: String,
    pub points: &'a [(f64, f64)],
    /// The colour's index (default: the series' own index).
    pub color: Option<usize>,
    /// Drawn dashed.
    pub dashed: bool,
}

impl<'a> Series<'a> {
    /// A solid line in the next colour.
    pub fn new(name: impl Into<String>, points: &'a [(f64, f64)]) -> Self {
        Series { name: name.into(), points, color: None, dashed: false }
    }
}

fn range(series: &[Series<'_>], axis: impl Fn(&(f64, f64)) -> f64) -> (f64, f64) {
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.points.iter().map(&axis))
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

/// The chart of every plot: its caption at `title.1` px, the ranges, and
/// the mesh with the axis labels.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn axes<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: (&str, u32),
    xr: (f64, f64),
    yr: (f64, f64),
    labels: (&str, &str),
) -> Result<Chart<'a, 'b>, String> {
    let mut chart = ChartBuilder::on(root)
        .caption(title.0, ("sans-serif", title.1))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc(labels.0).y_desc(labels.1).draw().map_err(|e| e.to_string())?;
    Ok(chart)
}

/// A line chart; `unit_square` fixes both axes to [0, 1].
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    unit_square: bool,
) -> Result<String, String> {
    lines_with_legend(title, x_label, y_label, series, unit_square, SeriesLabelPosition::MiddleRight)
}

/// [`lines`] with the legend at `legend`.
pub fn lines_with_legend(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    unit_square: bool,
    legend: SeriesLabelPosition,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (xr, yr) = if unit_square {
            ((0.0, 1.0), (0.0, 1.0))
        } else {
            (range(series, |p| p.0), range(series, |p| p.1))
        };
        let mut chart = axes(&root, (title, 22), xr, yr, (x_label, y_label))?;
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[s.color.unwrap_or(i) % COLORS.len()];
            let points = s.points.iter().copied().filter(|p| p.1.is_finite());
            let drawn = if s.dashed {
                chart.draw_series(DashedLineSeries::new(points, 6, 4, color.stroke_width(2)))
            } else {
                chart.draw_series(LineSeries::new(points, color.stroke_width(2)))
            };
            // A dash in the legend is two short strokes; a solid line one
            // stroke (drawn twice, so that both are the same element type).
            let (first, second) = if s.dashed { ((0, 7), (11, 18)) } else { ((0, 18), (0, 18)) };
            let legend = move |(x, y): (i32, i32)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(first.0, 0), (first.1, 0)], color.stroke_width(2))
                    + PathElement::new(vec![(second.0, 0), (second.1, 0)], color.stroke_width(2))
            };
            drawn.map_err(|e| e.to_string())?.label(s.name.clone()).legend(legend);
        }
        chart
            .configure_series_labels()
            .position(legend)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
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
/// the same colour.
pub fn bands(title: &str, x_label: &str, y_label: &str, bands: &[Band]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let edges: Vec<Series<'_>> =
            bands.iter().flat_map(|b| [Series::new("", &b.lo), Series::new("", &b.hi)]).collect();
        let (xr, yr) = (range(&edges, |p| p.0), range(&edges, |p| p.1));
        let mut chart = axes(&root, (title, 18), xr, yr, (x_label, y_label))?;
        for (i, b) in bands.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let outline: Vec<(f64, f64)> =
                b.lo.iter().chain(b.hi.iter().rev()).copied().filter(|p| p.1.is_finite()).collect();
            chart
                .draw_series(std::iter::once(Polygon::new(outline, color.mix(0.18).filled())))
                .map_err(|e| e.to_string())?;
            let points = b.mean.iter().copied().filter(|p| p.1.is_finite());
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(b.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
