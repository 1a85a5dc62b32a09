//! The curves of a run as PNG files (plotters): `loss.png` (training and validation loss) and
//! `accuracy.png` (training top-1, validation top-1 and top-5), rewritten after every epoch.
//!
//! Text needs a TrueType font, read at run time: `KINDLING_PLOT_FONT`, else DejaVu Sans where
//! Linux distributions put it (Debian: `fonts-dejavu-core`). Without one the curves are drawn
//! without captions and tick labels.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::run::{EpochMetrics, write_atomic};

const WIDTH: u32 = 800;
const HEIGHT: u32 = 480;

const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers a font with plotters once; whether text can be drawn.
fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let candidates = std::env::var("KINDLING_PLOT_FONT")
            .ok()
            .into_iter()
            .chain(FONT_PATHS.iter().map(|p| p.to_string()));
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                // plotters keeps fonts for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// One curve: its name, colour and values per epoch, and optionally a band around it (low and
/// high per epoch, drawn translucent).
#[derive(Debug)]
pub struct Curve<'a> {
    pub name: &'a str,
    pub colour: RGBColor,
    pub values: Vec<f64>,
    pub band: Option<Vec<(f64, f64)>>,
}

/// Distinct colours for up to ten curves (matplotlib's tab10), repeating after that.
pub fn palette(i: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = TAB10[i % TAB10.len()];
    RGBColor(r, g, b)
}

/// Writes one PNG of `curves` against epochs from 1 to `path`.
pub fn write_plot(
    path: &Path,
    title: &str,
    y_label: &str,
    curves: &[Curve<'_>],
    y_range: Option<(f64, f64)>,
) -> Result<()> {
    let png = render(title, y_label, 1, curves, y_range)?;
    write_atomic(path, &png)
}

/// Writes `loss.png` and `accuracy.png` for `history` into `dir`.
pub fn write_curves(dir: &Path, history: &[EpochMetrics]) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    let per = |f: fn(&EpochMetrics) -> f64| history.iter().map(f).collect::<Vec<f64>>();
    let loss = [
        Curve {
            name: "train loss",
            colour: BLUE,
            values: per(|m| m.train_loss),
            band: None,
        },
        Curve {
            name: "validation loss",
            colour: RED,
            values: per(|m| m.val_loss),
            band: None,
        },
    ];
    let accuracy = [
        Curve {
            name: "train top-1",
            colour: BLUE,
            values: per(|m| 100.0 * m.train_acc),
            band: None,
        },
        Curve {
            name: "validation top-1",
            colour: RED,
            values: per(|m| 100.0 * m.val_acc),
            band: None,
        },
        Curve {
            name: "validation top-5",
            colour: RGBColor(230, 140, 20),
            values: per(|m| 100.0 * m.val_top5),
            band: None,
        },
    ];
    let first = history[0].epoch;
    let png = render("loss", "loss", first, &loss, None)?;
    write_atomic(&dir.join("loss.png"), &png)?;
    let png = render(
        "accuracy",
        "accuracy (%)",
        first,
        &accuracy,
        Some((0.0, 100.0)),
    )?;
    write_atomic(&dir.join("accuracy.png"), &png)
}

/// The legend's corner: upper left when the curves end high (rising accuracy), else upper
/// right (falling loss), so that it covers the start of the curves, not their end.
fn legend_corner(curves: &[Curve<'_>], lo: f64, hi: f64) -> SeriesLabelPosition {
    let ends: Vec<f64> = curves
        .iter()
        .filter_map(|c| c.values.last().copied())
        .collect();
    let mean = ends.iter().sum::<f64>() / ends.len().max(1) as f64;
    if mean > (lo + hi) / 2.0 {
        SeriesLabelPosition::UpperLeft
    } else {
        SeriesLabelPosition::UpperRight
    }
}

/// Draws the curves against epochs `first..` and encodes the picture as PNG.
fn render(
    title: &str,
    y_label: &str,
    first: usize,
    curves: &[Curve<'_>],
    y_range: Option<(f64, f64)>,
) -> Result<Vec<u8>> {
    let text = font_available();
    let n = curves.iter().map(|c| c.values.len()).max().unwrap_or(1);
    let x_range = first as f64..(first + n.max(2) - 1) as f64;
    let finite = curves
        .iter()
        .flat_map(|c| c.values.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = y_range.unwrap_or_else(|| {
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if lo.is_finite() {
            (0.0f64.min(lo), hi.max(lo + 1e-3) * 1.05)
        } else {
            (0.0, 1.0)
        }
    });
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| anyhow!("drawing the {title} plot: {e}");
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(15);
        if text {
            builder
                .caption(title, ("sans-serif", 24))
                .x_label_area_size(40)
                .y_label_area_size(60);
        }
        let mut chart = builder
            .build_cartesian_2d(x_range, lo..hi)
            .map_err(|e| err(&e))?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc("epoch")
                .y_desc(y_label)
                .x_labels(n.clamp(2, 12))
                .x_label_formatter(&|x| format!("{x:.0}"));
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| err(&e))?;
        for curve in curves {
            if let Some(band) = &curve.band {
                let x = |i: usize| (first + i) as f64;
                let outline: Vec<(f64, f64)> = band
                    .iter()
                    .enumerate()
                    .map(|(i, &(_, hi))| (x(i), hi))
                    .chain(
                        band.iter()
                            .enumerate()
                            .rev()
                            .map(|(i, &(lo, _))| (x(i), lo)),
                    )
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        outline,
                        curve.colour.mix(0.12).filled(),
                    )))
                    .map_err(|e| err(&e))?;
            }
            let points: Vec<(f64, f64)> = curve
                .values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, &v)| ((first + i) as f64, v))
                .collect();
            let style = ShapeStyle::from(&curve.colour).stroke_width(2);
            let series = chart
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(|e| err(&e))?;
            if text {
                let colour = curve.colour;
                series.label(curve.name).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            }
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&p| Circle::new(p, 3, curve.colour.filled())),
                )
                .map_err(|e| err(&e))?;
        }
        if text {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(legend_corner(curves, lo, hi))
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    let picture = image::RgbImage::from_raw(WIDTH, HEIGHT, pixels)
        .ok_or_else(|| anyhow!("plot buffer has the wrong size"))?;
    let mut png = Vec::new();
    picture.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(png)
}
