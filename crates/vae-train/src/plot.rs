//! A small raster plotter for `curves.png`: line charts with axes, ticks and labels in an 8×8
//! bitmap font, so artifacts need no system fonts.

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([30, 30, 30]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// One line of a chart.
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Colour.
    pub color: [u8; 3],
    /// (x, y) points; non-finite y values are skipped.
    pub points: Vec<(f64, f64)>,
}

/// One chart panel.
pub struct Panel<'a> {
    /// Title above the chart.
    pub title: &'a str,
    /// x-axis label.
    pub x_label: &'a str,
    /// The lines.
    pub series: Vec<Series<'a>>,
}

fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, color: Rgb<u8>) {
    for (i, ch) in s.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 1 {
                    put(img, x + i as i64 * 8 + col, y + row as i64, color);
                }
            }
        }
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, color: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, color);
    }
}

fn line(
    img: &mut RgbImage,
    (x0, y0): (i64, i64),
    (x1, y1): (i64, i64),
    color: Rgb<u8>,
    thick: bool,
) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
    for s in 0..=steps {
        let x = x0 + (x1 - x0) * s / steps;
        let y = y0 + (y1 - y0) * s / steps;
        put(img, x, y, color);
        if thick {
            put(img, x, y + 1, color);
            put(img, x + 1, y, color);
        }
    }
}

/// Short tick label: 3 significant digits, scientific beyond 1e5.
fn label(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-2) {
        format!("{v:.1e}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn draw_panel(img: &mut RgbImage, panel: &Panel, left: i64, width: i64, height: i64) {
    let (ml, mr, mt, mb) = (76, 16, 28, 40);
    let (x0, x1, y0, y1) = (left + ml, left + width - mr, mt, height - mb);
    text(img, left + ml, 8, panel.title, BLACK);
    let points = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.1.is_finite());
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        xmin = xmin.min(x);
        xmax = xmax.max(x);
        ymin = ymin.min(y);
        ymax = ymax.max(y);
    }
    if xmin > xmax {
        text(img, x0 + 8, (y0 + y1) / 2, "no data", BLACK);
        return;
    }
    if xmax - xmin < 1e-12 {
        xmax = xmin + 1.0;
    }
    let pad = ((ymax - ymin) * 0.05).max(1e-9 * ymax.abs().max(1.0));
    ymin -= pad;
    ymax += pad;
    let sx = |x: f64| x0 + ((x - xmin) / (xmax - xmin) * (x1 - x0) as f64).round() as i64;
    let sy = |y: f64| y1 - ((y - ymin) / (ymax - ymin) * (y1 - y0) as f64).round() as i64;
    for i in 0..=4 {
        let v = ymin + (ymax - ymin) * i as f64 / 4.0;
        let y = sy(v);
        line(img, (x0, y), (x1, y), GRID, false);
        let l = label(v);
        text(img, x0 - 6 - 8 * l.len() as i64, y - 4, &l, BLACK);
    }
    let ticks = ((xmax - xmin).round() as i64).clamp(1, 10);
    for i in 0..=ticks {
        let v = xmin + (xmax - xmin) * i as f64 / ticks as f64;
        let x = sx(v);
        line(img, (x, y1), (x, y1 + 4), BLACK, false);
        let l = if (v - v.round()).abs() < 1e-9 {
            format!("{}", v.round())
        } else {
            label(v)
        };
        text(img, x - 4 * l.len() as i64, y1 + 8, &l, BLACK);
    }
    text(
        img,
        (x0 + x1) / 2 - 4 * panel.x_label.len() as i64,
        y1 + 22,
        panel.x_label,
        BLACK,
    );
    line(img, (x0, y0), (x0, y1), BLACK, false);
    line(img, (x0, y1), (x1, y1), BLACK, false);
    for (k, series) in panel.series.iter().enumerate() {
        let color = Rgb(series.color);
        let pts: Vec<(i64, i64)> = series
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| (sx(x), sy(y)))
            .collect();
        for w in pts.windows(2) {
            line(img, w[0], w[1], color, true);
        }
        for &(x, y) in &pts {
            for dx in -2..=2 {
                for dy in -2..=2 {
                    put(img, x + dx, y + dy, color);
                }
            }
        }
        let ly = y0 + 6 + 12 * k as i64;
        line(img, (x1 - 90, ly + 3), (x1 - 74, ly + 3), color, true);
        text(img, x1 - 68, ly, series.label, BLACK);
    }
}

/// Renders panels side by side into one image.
pub fn render(panels: &[Panel], panel_width: u32, height: u32) -> RgbImage {
    let mut img = RgbImage::from_pixel(panel_width * panels.len() as u32, height, WHITE);
    for (i, panel) in panels.iter().enumerate() {
        draw_panel(
            &mut img,
            panel,
            (i as u32 * panel_width) as i64,
            panel_width as i64,
            height as i64,
        );
    }
    img
}
