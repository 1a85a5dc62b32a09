//! Running a [`Transform`] pipeline on a whole batch tensor, with each sample's parameters
//! drawn from its own `(seed, epoch, index)` RNG in the same order as the CPU path.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::ops::{self, Dtype, EraseBox};
use crate::buffer::Image;
use crate::error::{AugmentError, Result};
use crate::functional::CropBox;
use crate::seed::sample_rng;
use crate::transforms::{
    Applied, ColorJitter, ErasePlan, EraseValue, MAX_SIDE, RandomCrop, RandomErasing,
    RandomHorizontalFlip, Sample, SampleSource, Transform, normal_noise,
};

/// A batch on a device: pixels `[N, C, H, W]` and what their values mean.
#[derive(Debug, Clone)]
pub struct DeviceBatch {
    pub pixels: Tensor<4>,
    pub dtype: Dtype,
}

impl DeviceBatch {
    /// Stacks same-shaped u8 images into one tensor on `device` (one copy, converted to f32
    /// values `0..=255`).
    pub fn from_u8(images: &[Image<u8>], device: &Device) -> Result<Self> {
        let pixels = stack(
            images,
            "DeviceBatch::from_u8",
            |v: &u8| f32::from(*v),
            device,
        )?;
        Ok(Self {
            pixels,
            dtype: Dtype::U8,
        })
    }

    /// Stacks same-shaped f32 images into one tensor on `device`.
    pub fn from_f32(images: &[Image<f32>], device: &Device) -> Result<Self> {
        let pixels = stack(images, "DeviceBatch::from_f32", |v: &f32| *v, device)?;
        Ok(Self {
            pixels,
            dtype: Dtype::F32,
        })
    }

    /// `[N, C, H, W]`.
    pub fn dims(&self) -> [usize; 4] {
        self.pixels.dims()
    }
}

fn stack<T: crate::Pixel>(
    images: &[Image<T>],
    op: &'static str,
    convert: impl Fn(&T) -> f32,
    device: &Device,
) -> Result<Tensor<4>> {
    let first = images
        .first()
        .ok_or_else(|| AugmentError::unsupported(op, &[0], "the batch is empty"))?;
    let [c, h, w] = first.shape();
    let mut data = Vec::with_capacity(images.len() * c * h * w);
    for (i, img) in images.iter().enumerate() {
        if img.shape() != [c, h, w] {
            return Err(AugmentError::unsupported(
                op,
                &img.shape(),
                format!("sample {i} differs from sample 0's shape {:?}", [c, h, w]),
            ));
        }
        data.extend(img.as_slice().iter().map(&convert));
    }
    Ok(Tensor::from_data(
        TensorData::new(data, [images.len(), c, h, w]),
        device,
    ))
}

/// Which code augments a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// [`Host`](Kernels::Host) when the batch is on burn's CPU backend (flex), where the
    /// tensor's memory is host memory; [`TensorOps`](Kernels::TensorOps) on every other device.
    #[default]
    Auto,
    /// burn tensor operations on the batch's device, whatever it is (kornia's approach).
    TensorOps,
    /// The CPU transforms (with their fused paths) on each sample in host memory, over rayon,
    /// then one tensor on the batch's device. On a GPU this copies the batch to the host and
    /// back; `Auto` never picks it there.
    Host,
}

/// Augments every sample of `batch` on its device: sample `i` gets the parameters that
/// [`Augment::apply_seeded`](crate::Augment::apply_seeded)`(_, seed, epoch, indices[i])` would
/// draw on the CPU, so both paths give the same sample up to the conformance tolerances.
pub fn augment_batch(
    pipeline: &Transform,
    batch: DeviceBatch,
    seed: u64,
    epoch: u64,
    indices: &[u64],
) -> Result<DeviceBatch> {
    Ok(augment_batch_recorded(pipeline, batch, seed, epoch, indices)?.0)
}

/// [`augment_batch`], also returning each sample's drawn parameters (the list
/// [`Augment::apply_recorded`](crate::Augment::apply_recorded) gives on the CPU).
pub fn augment_batch_recorded(
    pipeline: &Transform,
    batch: DeviceBatch,
    seed: u64,
    epoch: u64,
    indices: &[u64],
) -> Result<(DeviceBatch, Vec<Vec<Applied>>)> {
    augment_batch_with(Kernels::Auto, pipeline, batch, seed, epoch, indices)
}

/// [`augment_batch_recorded`] with a choice of [`Kernels`].
pub fn augment_batch_with(
    kernels: Kernels,
    pipeline: &Transform,
    batch: DeviceBatch,
    seed: u64,
    epoch: u64,
    indices: &[u64],
) -> Result<(DeviceBatch, Vec<Vec<Applied>>)> {
    let sources = indices
        .iter()
        .map(|&i| SampleSource::Draw {
            rng: Box::new(sample_rng(seed, epoch, i)),
            record: Vec::new(),
        })
        .collect();
    execute(kernels, pipeline, batch, sources)
}

/// Re-applies recorded parameters (one list per sample, from the CPU or the tensor path).
pub fn replay_batch(
    pipeline: &Transform,
    batch: DeviceBatch,
    params: &[Vec<Applied>],
) -> Result<DeviceBatch> {
    replay_batch_with(Kernels::Auto, pipeline, batch, params)
}

/// [`replay_batch`] with a choice of [`Kernels`].
pub fn replay_batch_with(
    kernels: Kernels,
    pipeline: &Transform,
    batch: DeviceBatch,
    params: &[Vec<Applied>],
) -> Result<DeviceBatch> {
    let sources = params
        .iter()
        .map(|p| SampleSource::Replay {
            params: p.clone(),
            next: 0,
        })
        .collect();
    Ok(execute(kernels, pipeline, batch, sources)?.0)
}

/// Whether `device` is burn's CPU backend, whose tensors live in host memory.
fn on_host(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        *device == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

fn execute(
    kernels: Kernels,
    pipeline: &Transform,
    batch: DeviceBatch,
    mut sources: Vec<SampleSource>,
) -> Result<(DeviceBatch, Vec<Vec<Applied>>)> {
    let dims = batch.dims();
    if dims.contains(&0) {
        return Err(AugmentError::unsupported(
            "augment_batch",
            &dims,
            "the batch is empty",
        ));
    }
    if sources.len() != dims[0] {
        return Err(AugmentError::mismatch(
            "augment_batch sample indices (or parameter lists)",
            dims[0],
            sources.len(),
        ));
    }
    let host = match kernels {
        Kernels::Auto => on_host(&batch.pixels.device()),
        Kernels::TensorOps => false,
        Kernels::Host => true,
    };
    let batch = if host {
        let DeviceBatch { pixels, dtype } = batch;
        let device = pixels.device();
        match host_batch(pixels.into_data(), dtype) {
            Ok(input) => {
                let out = run_on_host(pipeline, input, dims, &device, &mut sources)?;
                return finish(out, sources);
            }
            Err(data) => DeviceBatch {
                pixels: Tensor::from_data(data, &device),
                dtype,
            },
        }
    } else {
        batch
    };
    let rows: Vec<usize> = (0..dims[0]).collect();
    let out = run(pipeline, batch, &rows, &mut sources)?;
    finish(out, sources)
}

/// The output with each sample's parameters.
fn finish(
    out: DeviceBatch,
    sources: Vec<SampleSource>,
) -> Result<(DeviceBatch, Vec<Vec<Applied>>)> {
    let params = sources
        .into_iter()
        .map(SampleSource::finish)
        .collect::<Result<_>>()?;
    Ok((out, params))
}

/// A batch's values in host memory, as the CPU transforms take them.
enum HostBatch {
    U8(Vec<u8>),
    F32(TensorData),
}

/// The batch in host memory (on flex, a uniquely held tensor hands over its buffer without a
/// copy), or the data back if a u8 batch holds values that are not whole numbers in
/// `0..=255` (the tensor ops then give them their float semantics).
fn host_batch(data: TensorData, dtype: Dtype) -> std::result::Result<HostBatch, TensorData> {
    let Ok(values) = data.as_slice::<f32>() else {
        return Err(data);
    };
    match dtype {
        Dtype::U8 => {
            let bytes = crate::simd::dispatch(
                #[inline(always)]
                |_| {
                    let bytes: Vec<u8> = values.iter().map(|&v| v as u8).collect();
                    // Saturating casts: any value the u8 does not give back exactly (fractions,
                    // out of range, NaN) fails the round trip.
                    let exact = bytes
                        .iter()
                        .zip(values)
                        .fold(true, |ok, (&b, &v)| ok & (f32::from(b) == v));
                    exact.then_some(bytes)
                },
            );
            bytes.map(HostBatch::U8).ok_or(data)
        }
        Dtype::F32 => Ok(HostBatch::F32(data)),
    }
}

/// [`Kernels::Host`]: the CPU pipeline on every sample (rayon), written into one buffer that
/// becomes the output tensor.
fn run_on_host(
    pipeline: &Transform,
    input: HostBatch,
    [n, c, h, w]: [usize; 4],
    device: &Device,
    sources: &mut [SampleSource],
) -> Result<DeviceBatch> {
    use crate::Augment;
    use rayon::prelude::*;
    let plane = c * h * w;
    let floats: &[f32] = match &input {
        HostBatch::U8(_) => &[],
        // `host_batch` has checked the element type: the error cannot occur.
        HostBatch::F32(d) => d.as_slice().map_err(|e| {
            AugmentError::unsupported("augment_batch", &[n, c, h, w], format!("{e:?}"))
        })?,
    };
    let sample = |i: usize| match &input {
        HostBatch::U8(b) => Sample::U8(Image::from_vec_unchecked(
            b[i * plane..(i + 1) * plane].to_vec(),
            c,
            h,
            w,
        )),
        HostBatch::F32(_) => Sample::F32(Image::from_vec_unchecked(
            floats[i * plane..(i + 1) * plane].to_vec(),
            c,
            h,
            w,
        )),
    };
    // Sample 0 fixes the output shape and dtype; the others are written in place.
    let first = sources[0].with(|ctx| pipeline.run(sample(0), ctx))?;
    let (shape, dtype) = (first.shape(), first.dtype());
    let out_plane = shape.iter().product::<usize>();
    let mut data = vec![0.0f32; n * out_plane];
    let write = |i: usize, out: Sample, dst: &mut [f32]| -> Result<()> {
        if out.shape() != shape || out.dtype() != dtype {
            return Err(AugmentError::unsupported(
                "augment_batch",
                &out.shape(),
                format!(
                    "sample {i} came out as {} {:?}, sample 0 as {dtype} {shape:?}: a batch \
                     holds one shape and dtype",
                    out.dtype(),
                    out.shape(),
                ),
            ));
        }
        match out {
            Sample::U8(img) => {
                for (d, &v) in dst.iter_mut().zip(img.as_slice()) {
                    *d = f32::from(v);
                }
            }
            Sample::F32(img) => dst.copy_from_slice(img.as_slice()),
        }
        Ok(())
    };
    let (head, rest) = data.split_at_mut(out_plane);
    write(0, first, head)?;
    rest.par_chunks_mut(out_plane)
        .zip(sources[1..].par_iter_mut())
        .enumerate()
        .try_for_each(|(k, (dst, source))| {
            let out = source.with(|ctx| pipeline.run(sample(k + 1), ctx))?;
            write(k + 1, out, dst)
        })?;
    let [c, h, w] = shape;
    Ok(DeviceBatch {
        pixels: Tensor::from_data(TensorData::new(data, [n, c, h, w]), device),
        dtype: if dtype == "u8" { Dtype::U8 } else { Dtype::F32 },
    })
}

/// Draws one parameter per batch row with `draw`, from the row's own source.
fn draw_each<T>(
    rows: &[usize],
    sources: &mut [SampleSource],
    mut draw: impl FnMut(&mut crate::transforms::Context<'_, rand::rngs::StdRng>) -> Result<T>,
) -> Result<Vec<T>> {
    rows.iter().map(|&r| sources[r].with(&mut draw)).collect()
}

fn index_tensor(rows: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    Tensor::from_data(TensorData::new(v, [rows.len()]), device)
}

fn wrong_dtype(op: &'static str, dims: [usize; 4], wanted: &str) -> AugmentError {
    let (got, hint) = if wanted == "f32" {
        ("u8", "put it after ToTensor")
    } else {
        ("f32", "put it before ToTensor")
    };
    AugmentError::unsupported(
        op,
        &dims,
        format!("needs {wanted} values, got {got} ({hint})"),
    )
}

fn run(
    t: &Transform,
    x: DeviceBatch,
    rows: &[usize],
    sources: &mut [SampleSource],
) -> Result<DeviceBatch> {
    use crate::Augment;
    let DeviceBatch { pixels, dtype } = x;
    let [n, c, h, w] = pixels.dims();
    let pixels = match t {
        Transform::Compose(comp) => {
            let mut x = DeviceBatch { pixels, dtype };
            let mut k = 0;
            while k < comp.transforms.len() {
                // RandomCrop then RandomHorizontalFlip (the CIFAR recipe): one gather. Each
                // sample still draws the crop, then the flip, as on the CPU.
                if let (Transform::RandomCrop(rc), Some(Transform::RandomHorizontalFlip(fl))) =
                    (&comp.transforms[k], comp.transforms.get(k + 1))
                {
                    x = crop_and_flip(rc, Some(fl), x, rows, sources)?;
                    k += 2;
                } else {
                    x = run(&comp.transforms[k], x, rows, sources)?;
                    k += 1;
                }
            }
            return Ok(x);
        }
        Transform::RandomApply(a) => {
            let apply = draw_each(rows, sources, |ctx| a.next_apply(ctx))?;
            let picked: Vec<usize> = (0..n).filter(|&i| apply[i]).collect();
            let children = |x: DeviceBatch, rows: &[usize], s: &mut [SampleSource]| {
                a.transforms
                    .iter()
                    .try_fold(x, |x, child| run(child, x, rows, s))
            };
            return subset(
                "RandomApply",
                DeviceBatch { pixels, dtype },
                rows,
                sources,
                vec![picked],
                |_, x, r, s| children(x, r, s),
            );
        }
        Transform::RandomChoice(ch) => {
            let index = draw_each(rows, sources, |ctx| ch.next_index(ctx))?;
            let groups = (0..ch.transforms.len())
                .map(|k| (0..n).filter(|&i| index[i] == k).collect())
                .collect();
            return subset(
                "RandomChoice",
                DeviceBatch { pixels, dtype },
                rows,
                sources,
                groups,
                |k, x, r, s| run(&ch.transforms[k], x, r, s),
            );
        }
        Transform::RandomCrop(rc) => {
            return crop_and_flip(rc, None, DeviceBatch { pixels, dtype }, rows, sources);
        }
        Transform::RandomHorizontalFlip(fl) => {
            fl.validate()?;
            let flip = draw_each(rows, sources, |ctx| fl.next_flip(ctx))?;
            ops::horizontal_flip(pixels, &flip)?
        }
        Transform::RandomVerticalFlip(fl) => {
            fl.validate()?;
            let flip = draw_each(rows, sources, |ctx| fl.next_flip(ctx))?;
            ops::vertical_flip(pixels, &flip)?
        }
        Transform::RandomResizedCrop(rrc) => {
            rrc.validate()?;
            let boxes = draw_each(rows, sources, |ctx| rrc.next_box(ctx, [c, h, w]))?;
            let size = rrc.size.square_or_pair();
            ops::resized_crop(
                pixels,
                &boxes,
                size,
                rrc.interpolation,
                rrc.antialias,
                dtype,
            )?
        }
        Transform::RandomRotation(rot) => {
            rot.validate()?;
            let angles = draw_each(rows, sources, |ctx| rot.next_angle(ctx))?;
            let fill: Vec<f32> = rot.fill.values().iter().map(|&v| v as f32).collect();
            ops::rotate(
                pixels,
                &angles,
                rot.interpolation,
                rot.expand,
                rot.center,
                Some(&fill),
                dtype,
            )?
        }
        Transform::Resize(rs) => {
            rs.validate()?;
            let out = rs.output_size(h, w);
            if out.iter().any(|&s| s > MAX_SIDE) {
                return Err(AugmentError::unsupported(
                    "Resize",
                    &[n, c, h, w],
                    format!("output size {out:?} exceeds {MAX_SIDE}"),
                ));
            }
            ops::resize(pixels, out, rs.interpolation, rs.antialias, dtype)?
        }
        Transform::CenterCrop(cc) => {
            cc.validate()?;
            let [th, tw] = cc.size.square_or_pair();
            if th > h || tw > w {
                return Err(AugmentError::unsupported(
                    "CenterCrop",
                    &[n, c, h, w],
                    format!("crop {th}x{tw} is larger than the image"),
                ));
            }
            let offset = |outer: usize, inner: usize| {
                ((outer - inner) as f64 / 2.0).round_ties_even() as usize
            };
            ops::crop(
                pixels,
                CropBox {
                    top: offset(h, th),
                    left: offset(w, tw),
                    height: th,
                    width: tw,
                },
            )?
        }
        Transform::ColorJitter(cj) => {
            cj.validate()?;
            if c != 3 {
                return Err(AugmentError::unsupported(
                    "ColorJitter",
                    &[n, c, h, w],
                    format!("needs 3 (RGB) channels, got {c}"),
                ));
            }
            let drawn = draw_each(rows, sources, |ctx| cj.next_params(ctx))?;
            color_jitter(cj, pixels, &drawn, dtype)?
        }
        Transform::RandomErasing(re) => {
            re.validate()?;
            if dtype != Dtype::F32 {
                return Err(wrong_dtype("RandomErasing", [n, c, h, w], "f32"));
            }
            let plans = draw_each(rows, sources, |ctx| re.next_params(ctx, h, w))?;
            erase(re, pixels, &plans)?
        }
        Transform::ToTensor(_) => {
            if dtype != Dtype::U8 {
                return Err(wrong_dtype("ToTensor", [n, c, h, w], "u8"));
            }
            return Ok(DeviceBatch {
                pixels: ops::to_unit(pixels),
                dtype: Dtype::F32,
            });
        }
        Transform::Normalize(nm) => {
            nm.validate()?;
            if dtype != Dtype::F32 {
                return Err(wrong_dtype("Normalize", [n, c, h, w], "f32"));
            }
            let mean: Vec<f32> = nm.mean.iter().map(|&m| m as f32).collect();
            let std: Vec<f32> = nm.std.iter().map(|&s| s as f32).collect();
            ops::normalize(pixels, &mean, &std)?
        }
    };
    Ok(DeviceBatch { pixels, dtype })
}

/// RandomCrop, optionally followed by RandomHorizontalFlip, as one gather.
fn crop_and_flip(
    rc: &RandomCrop,
    flip: Option<&RandomHorizontalFlip>,
    x: DeviceBatch,
    rows: &[usize],
    sources: &mut [SampleSource],
) -> Result<DeviceBatch> {
    use crate::Augment;
    rc.validate()?;
    let [_, c, h, w] = x.dims();
    let (pad, size) = rc.layout([c, h, w])?;
    let pos = draw_each(rows, sources, |ctx| {
        rc.next_params(ctx, [c, h, w], pad, size)
    })?;
    let flips = match flip {
        Some(fl) => {
            fl.validate()?;
            Some(draw_each(rows, sources, |ctx| fl.next_flip(ctx))?)
        }
        None => None,
    };
    let fill: Vec<f32> = rc
        .fill
        .values()
        .iter()
        .map(|&v| match x.dtype {
            // As the CPU path's cast of the fill to u8: truncate and saturate.
            Dtype::U8 => f32::from(v as f32 as u8),
            Dtype::F32 => v as f32,
        })
        .collect();
    let pixels = ops::pad_crop(
        x.pixels,
        pad,
        rc.padding_mode,
        &fill,
        &pos,
        size,
        flips.as_deref(),
    )?;
    Ok(DeviceBatch {
        pixels,
        dtype: x.dtype,
    })
}

/// Runs `f(k, sub_batch, sub_rows)` on each non-empty group of batch rows and puts the results
/// back in place. Rows in no group keep their pixels. All results must share one shape and
/// dtype, and so must the untouched rows, or the batch could not hold them.
fn subset(
    op: &'static str,
    x: DeviceBatch,
    rows: &[usize],
    sources: &mut [SampleSource],
    groups: Vec<Vec<usize>>,
    mut f: impl FnMut(usize, DeviceBatch, &[usize], &mut [SampleSource]) -> Result<DeviceBatch>,
) -> Result<DeviceBatch> {
    let n = rows.len();
    let covered: usize = groups.iter().map(Vec::len).sum();
    if let Some(k) = groups.iter().position(|g| g.len() == n) {
        return f(k, x, rows, sources);
    }
    let device = x.pixels.device();
    let mut out: Option<DeviceBatch> = (covered < n).then(|| x.clone());
    for (k, group) in groups.iter().enumerate() {
        if group.is_empty() {
            continue;
        }
        let idx = index_tensor(group, &device);
        let sub = DeviceBatch {
            pixels: x.pixels.clone().select(0, idx.clone()),
            dtype: x.dtype,
        };
        let sub_rows: Vec<usize> = group.iter().map(|&i| rows[i]).collect();
        let y = f(k, sub, &sub_rows, sources)?;
        let [_, c, h, w] = y.dims();
        let acc = out.get_or_insert_with(|| DeviceBatch {
            pixels: Tensor::zeros([n, c, h, w], &device),
            dtype: y.dtype,
        });
        if acc.dims()[1..] != y.dims()[1..] || acc.dtype != y.dtype {
            return Err(AugmentError::unsupported(
                op,
                &y.dims(),
                format!(
                    "on a batch, the samples it changes must keep the shape {:?} and dtype \
                     {:?} of the others",
                    &acc.dims()[1..],
                    acc.dtype
                ),
            ));
        }
        acc.pixels = ops::assign_rows(acc.pixels.clone(), idx, y.pixels);
    }
    Ok(out.unwrap_or(x))
}

/// ColorJitter with per-sample order and factors. Brightness, contrast and saturation with
/// factor 1 leave an image bit-identical, so each step runs on the whole batch with the
/// identity for samples that do something else at that step; hue (not exact at 0) runs on
/// the samples that shift it only.
fn color_jitter(
    cj: &ColorJitter,
    x: Tensor<4>,
    drawn: &[([u8; 4], [Option<f64>; 4])],
    dtype: Dtype,
) -> Result<Tensor<4>> {
    let enabled = cj.ranges().map(|r| r.is_some());
    let steps = enabled.iter().filter(|&&e| e).count();
    // Each sample's enabled adjustments in its drawn order.
    let sequences: Vec<Vec<(u8, f64)>> = drawn
        .iter()
        .map(|(order, factors)| {
            order
                .iter()
                .filter_map(|&id| factors[usize::from(id)].map(|f| (id, f)))
                .collect()
        })
        .collect();
    let mut x = x;
    for step in 0..steps {
        // Brightness and contrast are both blends with a per-sample constant (0, or the mean
        // gray), so one pass does whichever of the two each sample has at this step.
        let blend: Vec<Option<(bool, f64)>> = sequences
            .iter()
            .map(|s| match s.get(step) {
                Some(&(0, f)) => Some((false, f)),
                Some(&(1, f)) => Some((true, f)),
                _ => None,
            })
            .collect();
        if blend.iter().any(Option::is_some) {
            x = ops::blend_with_mean(x, &blend, dtype)?;
        }
        for id in 2..4u8 {
            if !enabled[usize::from(id)] {
                continue;
            }
            let here: Vec<Option<f64>> = sequences
                .iter()
                .map(|s| s.get(step).filter(|(i, _)| *i == id).map(|&(_, f)| f))
                .collect();
            if here.iter().all(Option::is_none) {
                continue;
            }
            x = match id {
                3 => {
                    let picked: Vec<usize> =
                        (0..here.len()).filter(|&i| here[i].is_some()).collect();
                    let factors: Vec<f64> = picked.iter().filter_map(|&i| here[i]).collect();
                    let idx = index_tensor(&picked, &x.device());
                    let sub = x.clone().select(0, idx.clone());
                    ops::assign_rows(x, idx, ops::adjust_hue(sub, &factors, dtype)?)
                }
                _ => {
                    let factors: Vec<f64> = here.iter().map(|f| f.unwrap_or(1.0)).collect();
                    ops::adjust_saturation(x, &factors, dtype)?
                }
            };
        }
    }
    Ok(x)
}

/// RandomErasing's boxes, with the value, per-channel values or the same normal noise as the
/// CPU path (seeded per sample, laid out in the box in CHW order).
fn erase(re: &RandomErasing, x: Tensor<4>, plans: &[Option<ErasePlan>]) -> Result<Tensor<4>> {
    let [n, c, h, w] = x.dims();
    let boxes: Vec<Option<EraseBox>> = plans
        .iter()
        .map(|p| {
            p.map(|p| EraseBox {
                top: p.top,
                left: p.left,
                height: p.height,
                width: p.width,
            })
        })
        .collect();
    match &re.value {
        EraseValue::Single(v) => ops::erase(x, &boxes, &[*v as f32], None),
        EraseValue::PerChannel(v) => {
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            ops::erase(x, &boxes, &v, None)
        }
        EraseValue::Random(_) => {
            if plans.iter().all(Option::is_none) {
                return Ok(x);
            }
            let mut noise = vec![0.0f32; n * c * h * w];
            for (i, p) in plans.iter().enumerate() {
                let Some(p) = p else { continue };
                let z = normal_noise(p.noise_seed.unwrap_or_default(), c * p.height * p.width);
                for (k, &v) in z.iter().enumerate() {
                    let (ch, rest) = (k / (p.height * p.width), k % (p.height * p.width));
                    let (y, xx) = (rest / p.width, rest % p.width);
                    noise[((i * c + ch) * h + p.top + y) * w + p.left + xx] = v;
                }
            }
            let noise = Tensor::from_data(TensorData::new(noise, [n, c, h, w]), &x.device());
            ops::erase(x, &boxes, &[0.0], Some(noise))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Kernels::Auto` reads a batch back to the host only on flex, never on a GPU device.
    #[test]
    fn only_flex_counts_as_host_memory() {
        assert!(on_host(&Device::flex()));
        assert!(on_host(&Device::flex().autodiff()));
        #[cfg(feature = "wgpu")]
        {
            assert!(!on_host(&Device::wgpu(burn::tensor::DeviceKind::Cpu)));
            assert!(!on_host(&Device::wgpu(
                burn::tensor::DeviceKind::DefaultDevice
            )));
        }
    }
}
