//! Pictures of a trained model: reconstructions, samples, interpolations, latent traversals,
//! the 2-D manifold, and training curves.

use std::path::Path;

use burn::data::dataset::{Dataset, InMemDataset};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use image::{GrayImage, RgbImage};
use vae_core::{Posterior, Prior};
use vae_data::{ImageItem, ImageShape};
use vae_models::{ConditionConfig, Conditioned, Decoder, Encoder, Vae};

use crate::error::TrainError;
use crate::evaluate::{batcher_for, batches};
use crate::plot::{Panel, Series, render};
use crate::renderer::History;

/// Writes images (`[n, C·H·W]` in [0, 1]) as a grid with `cols` columns and 2-pixel gutters;
/// images smaller than 64 pixels are enlarged by an integer factor (nearest neighbour).
pub fn save_grid(
    path: &Path,
    images: &[Vec<f32>],
    dims: ImageShape,
    cols: usize,
) -> Result<(), TrainError> {
    let (c, h, w) = (dims.channels, dims.height, dims.width);
    let scale = (64 / h.max(w).max(1)).max(1);
    let (sh, sw) = (h * scale, w * scale);
    let cols = cols.max(1);
    let rows = images.len().div_ceil(cols);
    let (gw, gh) = ((sw + 2) * cols + 2, (sh + 2) * rows + 2);
    let mut rgb = RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([255, 255, 255]));
    for (k, img) in images.iter().enumerate() {
        let (ox, oy) = (2 + (k % cols) * (sw + 2), 2 + (k / cols) * (sh + 2));
        for y in 0..sh {
            for x in 0..sw {
                let (sy, sx) = (y / scale, x / scale);
                let px = |ch: usize| {
                    (img[ch * h * w + sy * w + sx].clamp(0.0, 1.0) * 255.0).round() as u8
                };
                let value = if c == 1 {
                    [px(0); 3]
                } else {
                    [px(0), px(1), px(2)]
                };
                rgb.put_pixel((ox + x) as u32, (oy + y) as u32, image::Rgb(value));
            }
        }
    }
    if c == 1 {
        let grey = GrayImage::from_fn(gw as u32, gh as u32, |x, y| {
            image::Luma([rgb.get_pixel(x, y)[0]])
        });
        save_png(grey.into(), path)
    } else {
        save_png(rgb.into(), path)
    }
}

/// Writes a PNG atomically (a crash leaves the old picture or the new one, never half).
fn save_png(image: image::DynamicImage, path: &Path) -> Result<(), TrainError> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| TrainError::file(path, e))?;
    crate::checkpoint::write_atomically(path, &bytes.into_inner())
}

/// A tensor's values on the host, row-major, as f32.
fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 after convert")
}

/// The rows of `[n, D]` values as host vectors.
pub(crate) fn rows<B: Backend>(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let [n, d] = t.dims();
    let flat = host(t);
    (0..n).map(|i| flat[i * d..(i + 1) * d].to_vec()).collect()
}

/// Φ⁻¹, the standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Latents `[1, n, L]` from host values, with their conditions `[n, C]` (`conditions` empty for
/// an unconditional model).
fn latents<B: Backend>(
    values: Vec<f32>,
    l: usize,
    conditions: Vec<f32>,
    device: &B::Device,
) -> Conditioned<B, 3> {
    let n = values.len() / l;
    let z = Tensor::from_data(TensorData::new(values, [1, n, l]), device);
    let c = (!conditions.is_empty()).then(|| {
        let width = conditions.len() / n;
        Tensor::from_data(TensorData::new(conditions, [n, width]), device)
    });
    Conditioned::new(z, c)
}

/// The condition-by-sample picture's images, row by row: `columns` draws z ~ p(z), each decoded
/// (its mean) under every condition of [`ConditionConfig::picture_rows`] (each class; or no
/// attribute, then each attribute alone), the first `max_rows` of them if given.
/// `[rows · columns, D]`.
pub fn condition_by_sample<B: Backend, E: Encoder<B>, D: Decoder<B>>(
    vae: &Vae<B, E, D>,
    condition: &ConditionConfig,
    columns: usize,
    max_rows: Option<usize>,
    device: &B::Device,
) -> Tensor<B, 2> {
    let z = host(vae.prior().sample(1, columns, device));
    let (mut grid, mut conditions) = (Vec::new(), Vec::new());
    let rows = condition.picture_rows();
    for (_, c) in rows.into_iter().take(max_rows.unwrap_or(usize::MAX)) {
        grid.extend_from_slice(&z);
        conditions.extend(c.repeat(columns));
    }
    vae.decode_mean(latents(grid, vae.latent_dim(), conditions, device))
}

/// Writes `reconstructions.png`, `samples.png`, `interpolation.png`, `traversal.png` and, for a
/// 2-D latent space, `manifold.png` into `dir`, from the first examples of `data`.
///
/// For a conditional model each picture decodes with the conditions of the examples it starts
/// from (interpolations mix the two endpoints' conditions as they mix their latents), and
/// `samples.png` is the condition-by-sample picture ([`condition_by_sample`]): one row per
/// class (or per attribute, after a row without any; the first 16 rows), and each column keeps
/// one z ~ p(z) across the rows.
pub fn write_model_pictures<B: Backend, E: Encoder<B>, D: Decoder<B>>(
    vae: &Vae<B, E, D>,
    data: &dyn Dataset<ImageItem>,
    dims: ImageShape,
    dir: &Path,
    device: &B::Device,
) -> Result<(), TrainError> {
    let l = vae.latent_dim();
    let width = vae.condition_dim();
    // The first 16 examples, held: only their conditions are checked, not the whole split's.
    let first = InMemDataset::new(
        (0..16.min(data.len()))
            .filter_map(|i| data.get(i))
            .collect(),
    );
    let batcher = batcher_for(vae, &first, "test")?;
    let batch = batches::<B>(&first, batcher, 16, device)
        .next()
        .ok_or(TrainError::EmptySplit { split: "test" })??;
    let (x, conditions) = (batch.images, batch.conditions);
    let n = x.dims()[0];
    // The conditions of the first examples on the host, `[n · C]` (empty: unconditional).
    let c: Vec<f32> = conditions.clone().map_or_else(Vec::new, host);
    let condition_of = |i: usize| c[i * width..(i + 1) * width].to_vec();

    // Inputs (odd rows) above their reconstructions (even rows), 8 per row.
    let inputs = rows(x.clone());
    let recon = rows(vae.reconstruct(Conditioned::new(x.clone(), conditions.clone())));
    let mut grid = Vec::new();
    for chunk in 0..n.div_ceil(8) {
        let range = chunk * 8..((chunk + 1) * 8).min(n);
        grid.extend(inputs[range.clone()].iter().cloned());
        grid.extend(recon[range].iter().cloned());
    }
    save_grid(&dir.join("reconstructions.png"), &grid, dims, 8.min(n))?;

    let samples = match vae.condition() {
        None => vae.sample(64, device),
        Some(condition) => condition_by_sample(vae, condition, 8, Some(16), device),
    };
    save_grid(&dir.join("samples.png"), &rows(samples), dims, 8)?;

    // Straight lines between the posterior locations (means; with a flow, the flow's image of
    // the base mean) of consecutive test images.
    let means = host(vae.posterior(Conditioned::new(x, conditions)).location());
    let steps = 10;
    let (mut path, mut path_conditions) = (Vec::new(), Vec::new());
    for pair in 0..(n / 2).min(6) {
        let (a, b) = (
            &means[2 * pair * l..(2 * pair + 1) * l],
            &means[(2 * pair + 1) * l..(2 * pair + 2) * l],
        );
        let (ca, cb) = (condition_of(2 * pair), condition_of(2 * pair + 1));
        for s in 0..steps {
            let t = s as f32 / (steps - 1) as f32;
            path.extend(a.iter().zip(b).map(|(u, v)| (1.0 - t) * u + t * v));
            path_conditions.extend(ca.iter().zip(&cb).map(|(u, v)| (1.0 - t) * u + t * v));
        }
    }
    if !path.is_empty() {
        save_grid(
            &dir.join("interpolation.png"),
            &rows(vae.decode_mean(latents(path, l, path_conditions, device))),
            dims,
            steps,
        )?;
    }
    // The first example's condition, for `count` latents.
    let first_condition = |count: usize| condition_of(0).repeat(count);

    // Each of the first 16 latent dimensions swept over [−3, 3] around the first image's mean.
    let sweep: Vec<f32> = (0..9).map(|i| -3.0 + 0.75 * i as f32).collect();
    let base = &means[..l];
    let mut traversal = Vec::new();
    for dim in 0..l.min(16) {
        for v in &sweep {
            let mut z = base.to_vec();
            z[dim] = *v;
            traversal.extend(z);
        }
    }
    let count = traversal.len() / l;
    save_grid(
        &dir.join("traversal.png"),
        &rows(vae.decode_mean(latents(traversal, l, first_condition(count), device))),
        dims,
        sweep.len(),
    )?;

    if l == 2 {
        // Decoded means over a grid of prior quantiles, as in Kingma & Welling's figure 4.
        let side = 15;
        let q: Vec<f32> = (0..side)
            .map(|i| normal_quantile(0.05 + 0.9 * i as f64 / (side - 1) as f64) as f32)
            .collect();
        let grid: Vec<f32> = q
            .iter()
            .rev()
            .flat_map(|y| q.iter().flat_map(move |x| [*x, *y]))
            .collect();
        save_grid(
            &dir.join("manifold.png"),
            &rows(vae.decode_mean(latents(grid, 2, first_condition(side * side), device))),
            dims,
            side,
        )?;
    }
    Ok(())
}

/// Writes `curves.png`: train and validation −ELBO, reconstruction −log p(x|z) and KL per epoch.
pub fn write_curves(history: &History, path: &Path) -> Result<(), TrainError> {
    type Pick = fn(&crate::renderer::EpochMetrics) -> f64;
    let panel = |title: &'static str, pick: Pick| Panel {
        title,
        x_label: "epoch",
        series: vec![
            Series {
                label: "train",
                color: [31, 119, 180],
                points: history
                    .train
                    .iter()
                    .map(|m| (m.epoch as f64, pick(m)))
                    .collect(),
            },
            Series {
                label: "valid",
                color: [255, 127, 14],
                points: history
                    .valid
                    .iter()
                    .map(|m| (m.epoch as f64, pick(m)))
                    .collect(),
            },
        ],
    };
    let panels = [
        panel("-ELBO (nats)", |m| m.elbo.neg_elbo_nats),
        panel("reconstruction -log p(x|z) (nats)", |m| {
            -m.elbo.log_likelihood_nats
        }),
        panel("KL(q(z|x) || p(z)) (nats)", |m| m.elbo.kl_nats),
    ];
    save_png(render(&panels, 420, 300).into(), path)
}

#[cfg(test)]
mod tests {
    use super::normal_quantile;

    #[test]
    fn quantiles_match_known_values() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_985),
            (0.05, -1.644_853_627),
            (0.001, -3.090_232_306),
        ] {
            assert!((normal_quantile(p) - z).abs() < 1e-8, "Φ⁻¹({p})");
        }
    }
}
