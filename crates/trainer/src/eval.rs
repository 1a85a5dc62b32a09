//! Evaluation and prediction: loss, top-1, top-5 and the confusion matrix of a model over a
//! dataset, and the most likely classes of single images, through a run's evaluation pipeline.

use anyhow::{Context, Result};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kindling_augment::{Augment, Sample, Transform, batch_to_tensor};
use kindling_model::AlexNet;
use rayon::prelude::*;

use crate::data::Dataset;
use crate::data::folder::BadImage;

/// What [`evaluate`] measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    /// Top-1 and top-5 accuracy in `[0, 1]`.
    pub top1: f64,
    pub top5: f64,
    /// `confusion[true class][predicted class]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// Undecodable images left out (only with `skip_bad_images`), with the reason.
    pub skipped: Vec<String>,
}

/// Loss, top-1 and top-5 accuracy and the confusion matrix of `model` over `data`, each image
/// through `pipeline` (decoded and transformed in parallel), without dropout or gradients. An
/// undecodable image is an error naming it, or with `skip_bad_images` it is left out of the
/// figures and listed in [`Evaluation::skipped`].
pub fn evaluate(
    model: &AlexNet,
    data: &Dataset,
    pipeline: &Transform,
    batch_size: usize,
    skip_bad_images: bool,
    device: &Device,
) -> Result<Evaluation> {
    let indices: Vec<usize> = (0..data.len()).collect();
    evaluate_samples(
        model,
        data,
        &indices,
        pipeline,
        batch_size,
        skip_bad_images,
        device,
    )
}

/// [`evaluate`] over the samples `indices` of `data` only.
pub fn evaluate_samples(
    model: &AlexNet,
    data: &Dataset,
    indices: &[usize],
    pipeline: &Transform,
    batch_size: usize,
    skip_bad_images: bool,
    device: &Device,
) -> Result<Evaluation> {
    let model = model.valid();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let classes = data.classes().len();
    let mut confusion = vec![vec![0usize; classes]; classes];
    let (mut loss_sum, mut top1, mut top5) = (0.0f64, 0usize, 0usize);
    let mut skipped = Vec::new();
    for chunk in indices.chunks(batch_size) {
        let decoded: Vec<Result<(kindling_augment::Image<f32>, usize)>> = chunk
            .par_iter()
            .map(|&index| {
                let (image, label) = data.get(index)?;
                let x = pipeline
                    .apply(
                        Sample::U8(image),
                        &mut kindling_augment::sample_rng(0, 0, 0),
                    )
                    .and_then(Sample::into_f32)
                    .with_context(|| {
                        format!("the evaluation pipeline on {}", data.describe(index))
                    })?;
                Ok((x, label))
            })
            .collect();
        let mut samples = Vec::with_capacity(decoded.len());
        for sample in decoded {
            match sample {
                Ok(sample) => samples.push(sample),
                Err(e) if skip_bad_images && e.is::<BadImage>() => skipped.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        if samples.is_empty() {
            continue;
        }
        let (images, labels): (Vec<_>, Vec<usize>) = samples.into_iter().unzip();
        let x = batch_to_tensor(&images, device)?;
        let y = labels_tensor(&labels, device);
        let logits = model.forward(x);
        loss_sum += scalar(loss_fn.forward(logits.clone(), y)) * labels.len() as f64;
        let scores = read_f32(logits)?;
        for (row, &label) in scores.chunks_exact(classes).zip(&labels) {
            // Rank of the true class: how many classes score higher.
            let rank = row.iter().filter(|&&s| s > row[label]).count();
            top1 += usize::from(rank == 0);
            top5 += usize::from(rank < 5);
            let predicted = (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            confusion[label][predicted] += 1;
        }
    }
    let n = indices.len() - skipped.len();
    if n == 0 {
        anyhow::bail!("no image to evaluate could be read (see skipped_images.txt)");
    }
    let n = n as f64;
    Ok(Evaluation {
        loss: loss_sum / n,
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
        confusion,
        skipped,
    })
}

/// The confusion matrix as a text table, true classes down, predictions across (column
/// headers are the first five letters of each class).
pub fn confusion_table(classes: &[String], confusion: &[Vec<usize>]) -> String {
    let width = classes.iter().map(|c| c.len()).max().unwrap_or(0).max(12);
    let mut out = format!("{:>width$} |", "true \\ pred");
    for c in classes {
        out.push_str(&format!(" {:>5.5}", c));
    }
    out.push('\n');
    for (c, row) in classes.iter().zip(confusion) {
        out.push_str(&format!("{c:>width$} |"));
        for v in row {
            out.push_str(&format!(" {v:>5}"));
        }
        out.push('\n');
    }
    out
}

/// The top `k` classes of an image for a model: `(label, probability)`, most likely first.
/// The image is converted to RGB and, when `fit_to` is given (runs on fixed-size datasets,
/// whose evaluation pipeline expects that size), resized to `fit_to` x `fit_to` (bilinear,
/// antialiased) before the evaluation `pipeline`; gray input becomes three equal channels like
/// the training data.
pub fn predict(
    model: &AlexNet,
    image: &image::DynamicImage,
    pipeline: &Transform,
    fit_to: Option<usize>,
    k: usize,
    device: &Device,
) -> Result<Vec<(usize, f32)>> {
    let rgb = image.to_rgb8();
    let mut img = kindling_augment::Image::try_from(&rgb)?;
    if let Some(side) = fit_to {
        img = kindling_augment::functional::resize(
            &img,
            [side, side],
            kindling_augment::functional::Interpolation::Bilinear,
            true,
        )?;
    }
    let x = pipeline
        .apply(Sample::U8(img), &mut kindling_augment::sample_rng(0, 0, 0))?
        .into_f32()?;
    let logits = model.valid().try_forward(batch_to_tensor(&[x], device)?)?;
    let probs = read_f32(burn::tensor::activation::softmax(logits, 1))?;
    let mut ranked: Vec<(usize, f32)> = probs.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    Ok(ranked)
}

pub(crate) fn labels_tensor(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let data: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(data, [labels.len()]), device)
}

fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read a tensor back: {e:?}"))
}

/// The value of a one-element tensor (NaN if it cannot be read).
pub(crate) fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f64::NAN)
}
