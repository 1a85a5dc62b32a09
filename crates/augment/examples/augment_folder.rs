//! Augments every PNG/JPEG image of a folder with a pipeline file and writes the results as PNGs.
//!
//! ```sh
//! cargo xtask example augment_folder -- crates/augment/pipelines/cifar.toml IN_DIR OUT_DIR [VERSIONS]
//! ```
//!
//! Version `v` of image `i` (files in name order) is drawn with the RNG of `(seed 0, epoch v,
//! index i)`, so a rerun writes the same files. f32 outputs (after `ToTensor`/`Normalize`)
//! are stretched to 0-255 per image for viewing.

use std::path::{Path, PathBuf};

use kindling_augment::{Augment, Image, Sample, Transform};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pipeline, input, output, rest @ ..] = args.as_slice() else {
        return Err("usage: augment_folder PIPELINE IN_DIR OUT_DIR [VERSIONS]".into());
    };
    let versions: u64 = rest.first().map_or(Ok(4), |v| v.parse())?;
    let pipeline = Transform::from_path(pipeline)?;
    std::fs::create_dir_all(output)?;

    let mut files: Vec<PathBuf> = std::fs::read_dir(input)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    for (index, path) in files.iter().enumerate() {
        let rgb = image::open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .to_rgb8();
        let img = Image::try_from(&rgb)?;
        for version in 0..versions {
            let out = pipeline.apply_seeded(img.clone(), 0, version, index as u64)?;
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
            let target = Path::new(output).join(format!("{stem}-{version}.png"));
            viewable(out)?.to_rgb_image()?.save(&target)?;
            println!("{}", target.display());
        }
    }
    Ok(())
}

/// u8 as it is; f32 stretched to the full 0-255 range.
fn viewable(sample: Sample) -> kindling_augment::Result<Image<u8>> {
    match sample {
        Sample::U8(img) => Ok(img),
        Sample::F32(img) => {
            let (lo, hi) = img
                .as_slice()
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
            let [c, h, w] = img.shape();
            let data = img
                .as_slice()
                .iter()
                .map(|&v| ((v - lo) * scale).round() as u8)
                .collect();
            Image::from_chw(data, c, h, w)
        }
    }
}
