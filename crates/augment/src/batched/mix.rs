//! MixUp and CutMix on a batch tensor, with torchvision's semantics (one lambda per batch,
//! sample `i` paired with sample `i - 1`, CutMix's lambda corrected to the pasted area), timm's
//! switch between them and label smoothing, and the soft-target cross-entropy they need.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, RngExt};
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

use super::ops::dims_for;
use crate::error::{AugmentError, Result, check_range};
use crate::functional::MixBox;

/// Mixed one-hot targets `[N, num_classes]`:
/// `lam * smooth(one_hot(y)) + (1 - lam) * smooth(one_hot(y.roll(1)))`, where `smooth` puts
/// `1 - s + s / K` on the label and `s / K` elsewhere (timm's label smoothing; `s = 0` is
/// plain one-hot, torchvision's).
pub fn mixed_targets(
    labels: &[usize],
    num_classes: usize,
    lam: f64,
    smoothing: f64,
    device: &Device,
) -> Result<Tensor<2>> {
    check_labels(labels, num_classes)?;
    check_range("lam", lam, 0.0, 1.0)?;
    check_range("label_smoothing", smoothing, 0.0, 1.0)?;
    let t = crate::functional::smoothed_mix_targets(labels, lam, num_classes, smoothing);
    Ok(Tensor::from_data(
        TensorData::new(t, [labels.len(), num_classes]),
        device,
    ))
}

fn check_labels(labels: &[usize], num_classes: usize) -> Result<()> {
    if labels.is_empty() {
        return Err(AugmentError::unsupported("mix", &[0], "the batch is empty"));
    }
    if num_classes == 0 {
        return Err(AugmentError::param("num_classes", 0, "at least 1"));
    }
    if let Some(&l) = labels.iter().find(|&&l| l >= num_classes) {
        return Err(AugmentError::param(
            "label",
            l,
            format!("less than num_classes = {num_classes}"),
        ));
    }
    Ok(())
}

/// MixUp with a fixed `lam`: `lam * x[i] + (1 - lam) * x[i - 1]` (sample 0 with the last),
/// and the mixed targets.
pub fn mixup(
    x: Tensor<4>,
    labels: &[usize],
    lam: f64,
    num_classes: usize,
    smoothing: f64,
) -> Result<(Tensor<4>, Tensor<2>)> {
    dims_for(&x, "mixup", labels.len())?;
    let targets = mixed_targets(labels, num_classes, lam, smoothing, &x.device())?;
    let rolled = x.clone().roll_dim(1, 0);
    Ok((
        rolled.mul_scalar((1.0 - lam) as f32) + x.mul_scalar(lam as f32),
        targets,
    ))
}

/// CutMix with a fixed box: the box of sample `i` comes from sample `i - 1`; targets are mixed
/// with `lam = 1 - box area / image area`, which is returned too.
pub fn cutmix(
    x: Tensor<4>,
    labels: &[usize],
    mix_box: MixBox,
    num_classes: usize,
    smoothing: f64,
) -> Result<(Tensor<4>, Tensor<2>, f64)> {
    let [_, c, h, w] = dims_for(&x, "cutmix", labels.len())?;
    let lam = crate::functional::cutmix_lambda(mix_box, h, w)?;
    let MixBox { x1, y1, x2, y2 } = mix_box;
    let device = x.device();
    let targets = mixed_targets(labels, num_classes, lam, smoothing, &device)?;
    let mut mask = vec![false; h * w];
    for y in y1..y2 {
        mask[y * w + x1..y * w + x2].fill(true);
    }
    let n = labels.len();
    let mask =
        Tensor::<4, burn::tensor::Bool>::from_data(TensorData::new(mask, [1, 1, h, w]), &device)
            .expand([n, c, h, w]);
    let rolled = x.clone().roll_dim(1, 0);
    Ok((x.mask_where(mask, rolled), targets, lam))
}

/// torchvision's CutMix box for `lam` and a centre `(rx, ry)`: half-sizes `int(r * W)` and
/// `int(r * H)` with `r = 0.5 * sqrt(1 - lam)`, clamped to the image.
pub fn cutmix_box(lam: f64, rx: usize, ry: usize, h: usize, w: usize) -> MixBox {
    let r = 0.5 * (1.0 - lam).max(0.0).sqrt();
    let (half_w, half_h) = ((r * w as f64) as usize, (r * h as f64) as usize);
    MixBox {
        x1: rx.saturating_sub(half_w),
        y1: ry.saturating_sub(half_h),
        x2: (rx + half_w).min(w),
        y2: (ry + half_h).min(h),
    }
}

/// MixUp and/or CutMix for a batch, timm-style: with probability `prob` the batch is mixed,
/// by CutMix with probability `switch_prob` when both are enabled (`None` disables one; an
/// alpha must be positive). Lambda is drawn from `Beta(alpha, alpha)`. Unmixed batches still get (smoothed)
/// one-hot targets, so the loss is the same soft-target cross-entropy either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchMix {
    pub mixup_alpha: Option<f64>,
    pub cutmix_alpha: Option<f64>,
    pub prob: f64,
    pub switch_prob: f64,
    pub label_smoothing: f64,
}

impl Default for BatchMix {
    /// torchvision's MixUp and CutMix defaults (alpha 1), alternating half the time.
    fn default() -> Self {
        Self {
            mixup_alpha: Some(1.0),
            cutmix_alpha: Some(1.0),
            prob: 1.0,
            switch_prob: 0.5,
            label_smoothing: 0.0,
        }
    }
}

/// What [`BatchMix`] drew for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MixDraw {
    None,
    MixUp { lam: f64 },
    CutMix { mix_box: [usize; 4] },
}

impl BatchMix {
    /// Checks every field: alphas finite and positive, probabilities in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        for (name, a) in [
            ("BatchMix.mixup_alpha", self.mixup_alpha),
            ("BatchMix.cutmix_alpha", self.cutmix_alpha),
        ] {
            if let Some(a) = a
                && !(a.is_finite() && a > 0.0)
            {
                return Err(AugmentError::param(
                    name,
                    a,
                    "a finite number > 0 (or unset)",
                ));
            }
        }
        check_range("BatchMix.prob", self.prob, 0.0, 1.0)?;
        check_range("BatchMix.switch_prob", self.switch_prob, 0.0, 1.0)?;
        check_range("BatchMix.label_smoothing", self.label_smoothing, 0.0, 1.0)
    }

    /// Draws the mixing for a batch of `h x w` images.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R, h: usize, w: usize) -> Result<MixDraw> {
        self.validate()?;
        let (mixup, cutmix) = (self.mixup_alpha.is_some(), self.cutmix_alpha.is_some());
        if !(mixup || cutmix) || rng.random::<f64>() >= self.prob {
            return Ok(MixDraw::None);
        }
        let use_cutmix = cutmix && (!mixup || rng.random::<f64>() < self.switch_prob);
        let alpha = if use_cutmix {
            self.cutmix_alpha
        } else {
            self.mixup_alpha
        }
        .unwrap_or(1.0);
        let beta = Beta::new(alpha, alpha)
            .map_err(|e| AugmentError::param("BatchMix alpha", alpha, e.to_string()))?;
        let lam = beta.sample(rng);
        if !use_cutmix {
            return Ok(MixDraw::MixUp { lam });
        }
        let rx = rng.random_range(0..w.max(1));
        let ry = rng.random_range(0..h.max(1));
        let b = cutmix_box(lam, rx, ry, h, w);
        Ok(MixDraw::CutMix {
            mix_box: [b.x1, b.y1, b.x2, b.y2],
        })
    }

    /// Applies a draw: the (possibly) mixed batch and its soft targets.
    pub fn apply(
        &self,
        x: Tensor<4>,
        labels: &[usize],
        num_classes: usize,
        draw: MixDraw,
    ) -> Result<(Tensor<4>, Tensor<2>)> {
        self.validate()?;
        let s = self.label_smoothing;
        match draw {
            MixDraw::None => {
                dims_for(&x, "BatchMix", labels.len())?;
                let t = mixed_targets(labels, num_classes, 1.0, s, &x.device())?;
                Ok((x, t))
            }
            MixDraw::MixUp { lam } => mixup(x, labels, lam, num_classes, s),
            MixDraw::CutMix {
                mix_box: [x1, y1, x2, y2],
            } => {
                let (x, t, _) = cutmix(x, labels, MixBox { x1, y1, x2, y2 }, num_classes, s)?;
                Ok((x, t))
            }
        }
    }
}

/// Cross-entropy against soft targets: `mean_n(-sum_k t[n, k] * log_softmax(logits)[n, k])`,
/// a one-element tensor. Equals burn's `CrossEntropyLoss` on one-hot targets.
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Result<Tensor<1>> {
    if logits.dims() != targets.dims() {
        return Err(AugmentError::unsupported(
            "soft_cross_entropy",
            &targets.dims(),
            format!("targets must have the logits' shape {:?}", logits.dims()),
        ));
    }
    let per_sample = (log_softmax(logits, 1) * targets).sum_dim(1).neg();
    Ok(per_sample.mean())
}
