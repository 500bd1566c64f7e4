//! Shared by the integration tests: small in-memory datasets and a run configuration.
#![allow(dead_code)]

use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use burn::data::dataset::InMemDataset;
use vae_core::ImageShape;
use vae_data::{DataOptions, DataSplits, ImageAttributes, ImageItem};
use vae_models::{Architecture, MlpVaeConfig};
use vae_train::{RunConfig, TrainingConfig};

pub type B = Autodiff<Flex>;

/// 4×4 grey images: a bright square at one of four places, so there is something to learn.
pub fn splits(dir: &std::path::Path) -> DataSplits {
    squares(dir, false)
}

/// [`splits`] with class labels: the place of the square, 0 to 3 (top left, bottom left, top
/// right, bottom right: row (k mod 2)·2, column ⌊k / 2⌋·2), and the same place as two
/// attributes, `Bottom` (k mod 2 = 1) and `Right` (⌊k / 2⌋ = 1).
pub fn labelled_splits(dir: &std::path::Path) -> DataSplits {
    squares(dir, true)
}

fn squares(dir: &std::path::Path, labelled: bool) -> DataSplits {
    let names: Arc<[String]> = ["Bottom".to_string(), "Right".to_string()].into();
    let images = |n: usize| {
        let items: Vec<ImageItem> = (0..n)
            .map(|i| {
                let (r, c) = ((i % 2) * 2, (i / 2 % 2) * 2);
                let pixels = (0..16)
                    .map(|p| {
                        let (y, x) = (p / 4, p % 4);
                        if (r..r + 2).contains(&y) && (c..c + 2).contains(&x) {
                            230
                        } else {
                            20
                        }
                    })
                    .collect();
                let attributes = ImageAttributes {
                    names: names.clone(),
                    values: vec![i % 2 == 1, i / 2 % 2 == 1],
                };
                ImageItem {
                    pixels,
                    label: labelled.then_some((i % 4) as u32),
                    attributes: labelled.then_some(attributes),
                }
            })
            .collect();
        Arc::new(InMemDataset::new(items))
    };
    DataSplits {
        train: images(64),
        valid: images(16),
        test: images(16),
        shape: ImageShape::new(1, 4, 4),
        health: None,
        dir: dir.to_path_buf(),
    }
}

pub fn config(epochs: usize) -> RunConfig<Architecture> {
    RunConfig {
        dataset: "in-memory squares".into(),
        data: DataOptions::default(),
        model: Architecture::Mlp(MlpVaeConfig::new(16, vec![8], 2)),
        training: TrainingConfig {
            epochs,
            batch_size: 16,
            ..TrainingConfig::default()
        },
    }
}

/// `n` 8×8 grey images: a bright 4×4 square at one of four places, with a little texture so
/// that no two neighbouring images are equal.
pub fn squares_8x8(n: usize) -> Vec<ImageItem> {
    (0..n)
        .map(|i| {
            let (r, c) = ((i % 2) * 4, (i / 2 % 2) * 4);
            let pixels = (0..64)
                .map(|p| {
                    let (y, x) = (p / 8, p % 8);
                    let on = (r..r + 4).contains(&y) && (c..c + 4).contains(&x);
                    (if on { 200 } else { 30 }) + ((i * 7 + p * 3) % 40) as u8
                })
                .collect();
            ImageItem::new(pixels)
        })
        .collect()
}
