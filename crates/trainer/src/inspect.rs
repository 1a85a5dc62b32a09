//! `kindling summary`, `kindling filters` and `kindling preview`: looking inside a model and a
//! pipeline. The trainer owns files; the model and augment crates work on values.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use image::{Rgb, RgbImage};
use kindling_augment::{Augment, Image, Sample, Transform};
use kindling_model::{AlexNet, AlexNetConfig, GridOptions, LayerSummary};

/// The model names the CLI accepts.
pub const MODELS: &str = "alexnet, alexnet-paper, alexnet-paper-ungrouped, cifar";

/// Builds the named model on flex, with torchvision-format weights from `weights` if given.
pub fn model(name: &str, weights: Option<&Path>) -> Result<AlexNet> {
    let config = match name {
        "alexnet" => AlexNetConfig::torchvision(),
        "alexnet-paper" => AlexNetConfig::paper(true),
        "alexnet-paper-ungrouped" => AlexNetConfig::paper(false),
        "cifar" => AlexNetConfig::cifar(),
        other => bail!("unknown model {other:?}: expected one of {MODELS}"),
    };
    let model = config.init(&Device::flex());
    match weights {
        Some(path) => Ok(model.load_weights(path)?),
        None => Ok(model),
    }
}

/// Parses `3x224x224` (channels x height x width) into a batch-of-one input shape.
pub fn input_shape(text: &str) -> Result<[usize; 4]> {
    let dims: Vec<usize> = text
        .split(['x', 'X'])
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad --input {text:?}: expected CxHxW, e.g. 3x224x224"))?;
    match dims[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([1, c, h, w]),
        _ => bail!("bad --input {text:?}: expected three positive sizes CxHxW, e.g. 3x224x224"),
    }
}

/// The nominal input of a variant, e.g. 3x227x227 for the paper's network.
pub fn default_input(model: &AlexNet) -> [usize; 4] {
    let side = model.variant().nominal_input();
    [1, 3, side, side]
}

/// What the first convolution does to its input, in words: the seed tutorial's analysis.
pub fn describe_first_layer(layer: &LayerSummary, input: [usize; 4]) -> String {
    let [_, channels, height, width] = input;
    let (k, stride, pad) = (
        layer.kernel.unwrap_or(0),
        layer.stride.unwrap_or(1),
        layer.padding.unwrap_or(0),
    );
    let out = &layer.output_shape;
    let (filters, out_h, out_w) = (
        out.get(1).copied().unwrap_or(0),
        out.get(2).copied().unwrap_or(0),
        out.get(3).copied().unwrap_or(0),
    );
    format!(
        "{name}: {kind} with {filters} filters of {k}x{k}x{channels}, stride {stride}, padding {pad}\n\
         input {channels}x{height}x{width} -> output {filters}x{out_h}x{out_w}: \
         (H + 2*{pad} - {k}) / {stride} + 1 = {out_h}, so each output pixel steps {stride} input pixels \
         and resolution drops {:.1}x per side\n\
         each output unit sees a {k}x{k} patch of the image; {params} parameters, {macs} MACs per image",
        height as f64 / out_h.max(1) as f64,
        name = layer.name,
        kind = layer.kind,
        params = layer.params,
        macs = layer.macs,
    )
}

/// The first layer's filters as one image, like Figure 3 of the AlexNet paper.
pub fn filters(model: &AlexNet) -> Result<RgbImage> {
    Ok(model.filter_image("features.0", GridOptions::default())?)
}

/// The feature maps of `layer` for `picture`, resized (bilinear) to the model's nominal input and
/// normalised with ImageNet's statistics, tiled into one image.
pub fn activations(
    model: &AlexNet,
    layer: &str,
    picture: &image::DynamicImage,
) -> Result<RgbImage> {
    let side = model.variant().nominal_input() as u32;
    let resized = picture
        .resize_exact(side, side, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let input = kindling_model::image_to_tensor(&resized, &Device::flex());
    // Layers are named `features.3`; a bare number is an index into the execution order.
    let image = match layer.parse::<usize>() {
        Ok(index) => model.activation_image(input, index, 0, GridOptions::default())?,
        Err(_) => model.activation_image(input, layer, 0, GridOptions::default())?,
    };
    Ok(image)
}

/// `original | n augmented versions` side by side, each centred in a cell of the largest size.
///
/// f32 outputs are mapped back to pixels by undoing the pipeline's last top-level `Normalize`,
/// so the grid shows what the model sees, in the colours a person expects.
pub fn preview(pipeline: &Transform, image: &RgbImage, n: usize, seed: u64) -> Result<RgbImage> {
    let original = Image::try_from(image)?;
    let mut tiles = vec![image.clone()];
    for index in 0..n {
        let out = pipeline.apply_seeded(Sample::U8(original.clone()), seed, 0, index as u64)?;
        tiles.push(to_display(out, pipeline)?);
    }
    Ok(tile_row(&tiles))
}

fn to_display(sample: Sample, pipeline: &Transform) -> Result<RgbImage> {
    let image = match sample {
        Sample::U8(img) => img,
        Sample::F32(img) => {
            let (mean, std) = last_normalize(pipeline).unwrap_or(([0.0; 3], [1.0; 3]));
            let plane = img.height() * img.width();
            let data = img
                .as_slice()
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let c = (i / plane).min(2);
                    ((v * std[c] + mean[c]) * 255.0).round().clamp(0.0, 255.0) as u8
                })
                .collect();
            Image::from_chw(data, img.channels(), img.height(), img.width())?
        }
    };
    Ok(image.to_rgb_image()?)
}

fn last_normalize(pipeline: &Transform) -> Option<([f32; 3], [f32; 3])> {
    let top_level = match pipeline {
        Transform::Compose(c) => c.transforms.as_slice(),
        single => std::slice::from_ref(single),
    };
    top_level.iter().rev().find_map(|t| match t {
        Transform::Normalize(n) => {
            let (mean, std) = (&n.mean, &n.std);
            let pick = |v: &[f64], c: usize| *v.get(c).or(v.first()).unwrap_or(&0.0) as f32;
            Some((
                [pick(mean, 0), pick(mean, 1), pick(mean, 2)],
                [pick(std, 0), pick(std, 1), pick(std, 2)],
            ))
        }
        _ => None,
    })
}

/// The first `rows * 10` samples of the built-in dataset (seed `seed`), scaled 3x, one class per
/// column.
pub fn dataset_grid(seed: u64, rows: usize) -> Result<RgbImage> {
    use crate::data::synthetic::{CLASSES, SIZE, Synthetic};
    const SCALE: u32 = 3;
    let data = Synthetic::new(seed, rows * CLASSES.len());
    let cell = SIZE as u32 * SCALE + 2;
    let mut canvas = RgbImage::from_pixel(
        cell * CLASSES.len() as u32,
        cell * rows as u32,
        Rgb([255; 3]),
    );
    for index in 0..data.len() {
        let (sample, label) = data.get(index);
        let picture = sample.to_rgb_image()?;
        let big = image::imageops::resize(
            &picture,
            picture.width() * SCALE,
            picture.height() * SCALE,
            image::imageops::FilterType::Nearest,
        );
        let (x, y) = (
            label as u32 * cell + 1,
            (index / CLASSES.len()) as u32 * cell + 1,
        );
        image::imageops::replace(&mut canvas, &big, x.into(), y.into());
    }
    Ok(canvas)
}

fn tile_row(tiles: &[RgbImage]) -> RgbImage {
    const GAP: u32 = 4;
    let cell_w = tiles.iter().map(RgbImage::width).max().unwrap_or(1);
    let cell_h = tiles.iter().map(RgbImage::height).max().unwrap_or(1);
    let width = tiles.len() as u32 * (cell_w + GAP) + GAP;
    let mut canvas = RgbImage::from_pixel(width, cell_h + 2 * GAP, Rgb([255, 255, 255]));
    for (i, tile) in tiles.iter().enumerate() {
        let x0 = GAP + i as u32 * (cell_w + GAP) + (cell_w - tile.width()) / 2;
        let y0 = GAP + (cell_h - tile.height()) / 2;
        image::imageops::replace(&mut canvas, tile, x0.into(), y0.into());
    }
    canvas
}
