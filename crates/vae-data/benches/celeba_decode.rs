//! CelebA-style preprocessing throughput: JPEG decode + centre crop 148 + resize 64 of 178×218
//! images (CelebA's aligned size), per core, against reading the same images from the cache.
//!
//! `cargo bench -p vae-data --bench celeba_decode`

// criterion_group! and criterion_main! generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vae_data::{ImageBatcher, ImageCache, ImageItem, Preprocess};

const IMAGES: usize = 64;

/// Photo-like 178×218 JPEGs: smooth colour fields plus pixel noise, ≈ CelebA's ~7 KB per file.
fn fixtures(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..IMAGES)
        .map(|i| {
            let img = image::RgbImage::from_fn(178, 218, |x, y| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state % 24) as i32 - 12;
                let base = |c: i32| (c + noise).clamp(0, 255) as u8;
                image::Rgb([
                    base((x as i32 + i as i32 * 3) % 256),
                    base(((y as i32) * 2 + x as i32 / 3) % 256),
                    base(128 + ((x as i32 - 89).abs() - (y as i32 - 109).abs()) / 2),
                ])
            });
            let path = dir.join(format!("{i:06}.jpg"));
            img.save(&path).unwrap();
            path
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let paths = fixtures(dir.path());
    let bytes: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let mean_kb = bytes.iter().map(Vec::len).sum::<usize>() as f64 / IMAGES as f64 / 1024.0;
    eprintln!("fixtures: {IMAGES} JPEGs of 178×218, {mean_kb:.1} KB on average");
    let preprocess = Preprocess::celeba();

    let mut group = c.benchmark_group("celeba_preprocess");
    group.throughput(Throughput::Elements(IMAGES as u64));
    group.bench_function("decode_crop_resize_one_core", |b| {
        b.iter(|| {
            for (p, data) in paths.iter().zip(&bytes) {
                black_box(preprocess.apply(p, data).unwrap());
            }
        })
    });
    let cache_path = dir.path().join("cache.u8");
    let cache = ImageCache::open_or_build(&cache_path, &paths, &preprocess, false).unwrap();
    group.bench_function("cached_read_one_core", |b| {
        b.iter(|| {
            for i in 0..IMAGES {
                black_box(cache.read(i).unwrap());
            }
        })
    });
    group.finish();

    // What the training loop's loader does per conv-preset batch (batch 256): read each image
    // from the cache in shuffled order and stack it as floats k / 255 (everything but the
    // upload). The GPU must never wait for this: PyTorch on an H100 trains 29 570 img/s.
    let mut group = c.benchmark_group("celeba_loader");
    const BATCH: usize = 256;
    group.throughput(Throughput::Elements(BATCH as u64));
    let order: Vec<usize> = (0..BATCH).map(|i| (i * 37 + 11) % IMAGES).collect();
    group.bench_function("cached_batch_256_one_core", |b| {
        b.iter(|| {
            let items: Vec<ImageItem> = order
                .iter()
                .map(|&i| ImageItem::new(cache.read(i).unwrap()))
                .collect();
            black_box(ImageBatcher::to_floats(&items));
        })
    });
    group.finish();

    let mut group = c.benchmark_group("celeba_preprocess");
    group.throughput(Throughput::Elements(IMAGES as u64));
    group.bench_function("cache_build_all_cores", |b| {
        b.iter(|| {
            let _ = std::fs::remove_file(&cache_path);
            black_box(ImageCache::open_or_build(&cache_path, &paths, &preprocess, false).unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
