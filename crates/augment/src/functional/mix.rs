//! Batch-mixing ops (MixUp, CutMix) with fixed parameters, as torchvision v2's transforms apply
//! them once their random parameters are drawn.

use crate::buffer::Image;
use crate::error::{AugmentError, Result, check_range};

/// A mixed batch: images plus soft targets, `targets[i * num_classes + k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixed {
    pub images: Vec<Image<f32>>,
    pub targets: Vec<f32>,
    pub num_classes: usize,
}

/// A CutMix box in pixels, `x1..x2` columns and `y1..y2` rows (torchvision's XYXY order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixBox {
    pub x1: usize,
    pub y1: usize,
    pub x2: usize,
    pub y2: usize,
}

/// MixUp: `lam * x[i] + (1 - lam) * x[i - 1]`, sample 0 paired with the last one (torch's
/// `roll(1, 0)`); targets are one-hot labels mixed the same way.
pub fn mixup(
    batch: &[Image<f32>],
    labels: &[usize],
    lam: f64,
    num_classes: usize,
) -> Result<Mixed> {
    check_range("lam", lam, 0.0, 1.0)?;
    check_batch(batch, labels, num_classes)?;
    let (a, b) = (lam as f32, (1.0 - lam) as f32);
    let images = (0..batch.len())
        .map(|i| {
            let prev = &batch[prev_index(i, batch.len())];
            let [c, h, w] = batch[i].shape();
            let data = batch[i]
                .as_slice()
                .iter()
                .zip(prev.as_slice())
                .map(|(&x, &r)| r * b + x * a)
                .collect();
            Image::from_vec_unchecked(data, c, h, w)
        })
        .collect();
    Ok(Mixed {
        images,
        targets: mix_targets(labels, lam, num_classes),
        num_classes,
    })
}

/// CutMix: the box of sample `i` is replaced by the same box of sample `i - 1` (torch's
/// `roll(1, 0)`), and targets are mixed with `lam = 1 - box area / image area`, i.e. the
/// fraction of each image that is still its own.
pub fn cutmix(
    batch: &[Image<f32>],
    labels: &[usize],
    mix_box: MixBox,
    num_classes: usize,
) -> Result<Mixed> {
    check_batch(batch, labels, num_classes)?;
    let [_, h, w] = batch[0].shape();
    let lam = cutmix_lambda(mix_box, h, w)?;
    let MixBox { x1, y1, x2, y2 } = mix_box;
    let images = (0..batch.len())
        .map(|i| {
            let prev = &batch[prev_index(i, batch.len())];
            let mut out = batch[i].clone();
            let plane = h * w;
            for (k, v) in out.as_mut_slice().iter_mut().enumerate() {
                let (y, x) = ((k % plane) / w, k % w);
                if (y1..y2).contains(&y) && (x1..x2).contains(&x) {
                    *v = prev.as_slice()[k];
                }
            }
            out
        })
        .collect();
    Ok(Mixed {
        images,
        targets: mix_targets(labels, lam, num_classes),
        num_classes,
    })
}

/// Checks a CutMix box against an `h x w` image and returns the area-corrected lambda,
/// `1 - box area / image area`.
pub(crate) fn cutmix_lambda(mix_box: MixBox, h: usize, w: usize) -> Result<f64> {
    let MixBox { x1, y1, x2, y2 } = mix_box;
    if x1 > x2 || y1 > y2 || x2 > w || y2 > h {
        return Err(AugmentError::param(
            "box",
            mix_box,
            format!("x1 <= x2 <= {w} and y1 <= y2 <= {h}"),
        ));
    }
    Ok(1.0 - ((x2 - x1) * (y2 - y1)) as f64 / (w * h) as f64)
}

fn prev_index(i: usize, n: usize) -> usize {
    (i + n - 1) % n
}

fn check_batch(batch: &[Image<f32>], labels: &[usize], num_classes: usize) -> Result<()> {
    let Some(first) = batch.first() else {
        return Err(AugmentError::unsupported("mix", &[0], "the batch is empty"));
    };
    if labels.len() != batch.len() {
        return Err(AugmentError::mismatch(
            "labels per batch sample",
            batch.len(),
            labels.len(),
        ));
    }
    if let Some(other) = batch.iter().find(|img| img.shape() != first.shape()) {
        return Err(AugmentError::unsupported(
            "mix",
            &other.shape(),
            format!("all images of a batch must have shape {:?}", first.shape()),
        ));
    }
    if labels.len().checked_mul(num_classes).is_none() {
        return Err(AugmentError::param(
            "num_classes",
            num_classes,
            "small enough for batch * num_classes targets",
        ));
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

/// `one_hot(y) * lam + one_hot(y.roll(1)) * (1 - lam)`, in torchvision's operation order.
fn mix_targets(labels: &[usize], lam: f64, num_classes: usize) -> Vec<f32> {
    smoothed_mix_targets(labels, lam, num_classes, 0.0)
}

/// [`mix_targets`] with timm's label smoothing `s`: `1 - s + s / K` on the label, `s / K`
/// elsewhere (`s = 0` is plain one-hot).
pub(crate) fn smoothed_mix_targets(
    labels: &[usize],
    lam: f64,
    num_classes: usize,
    smoothing: f64,
) -> Vec<f32> {
    let off = (smoothing / num_classes as f64) as f32;
    let on = (1.0 - smoothing) as f32 + off;
    let (a, b) = (lam as f32, (1.0 - lam) as f32);
    let n = labels.len();
    let mut out = Vec::with_capacity(n * num_classes);
    for i in 0..n {
        let prev = labels[prev_index(i, n)];
        for k in 0..num_classes {
            let own = if labels[i] == k { on } else { off };
            let other = if prev == k { on } else { off };
            out.push(other * b + own * a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Vec<Image<f32>> {
        (0..3)
            .map(|i| Image::filled(i as f32, 1, 4, 4).expect("valid"))
            .collect()
    }

    #[test]
    fn mixup_pairs_with_previous_sample() {
        let m = mixup(&batch(), &[0, 1, 2], 0.25, 3).expect("ok");
        // Sample 0 is mixed with sample 2.
        assert_eq!(m.images[0].get(0, 0, 0), 0.75 * 2.0);
        assert_eq!(&m.targets[0..3], &[0.25, 0.0, 0.75]);
    }

    #[test]
    fn cutmix_area_corrects_lambda() {
        let b = MixBox {
            x1: 0,
            y1: 0,
            x2: 2,
            y2: 2,
        };
        let m = cutmix(&batch(), &[0, 1, 2], b, 3).expect("ok");
        assert_eq!(m.images[1].get(0, 1, 1), 0.0);
        assert_eq!(m.images[1].get(0, 2, 2), 1.0);
        assert_eq!(&m.targets[3..6], &[0.25, 0.75, 0.0]);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(mixup(&batch(), &[0, 1], 0.5, 3).is_err());
        assert!(mixup(&batch(), &[0, 1, 3], 0.5, 3).is_err());
        assert!(mixup(&batch(), &[0, 1, 2], f64::NAN, 3).is_err());
        assert!(mixup(&[], &[], 0.5, 3).is_err());
        let b = MixBox {
            x1: 3,
            y1: 0,
            x2: 5,
            y2: 1,
        };
        assert!(cutmix(&batch(), &[0, 1, 2], b, 3).is_err());
    }
}
