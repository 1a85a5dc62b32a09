//! Runs every case of the torchvision conformance manifest (see the reference README) and
//! applies its pass rule to every output tensor.
//!
//! The reference folder is `$KINDLING_AUGMENT_REFERENCE`, or else the first
//! `shared/conformance/augment` found walking up from this crate (in the workspace:
//! `crates/augment/../../../shared/conformance/augment`). A missing reference is a failure.

use std::path::{Path, PathBuf};

use kindling_augment::Image;
use kindling_augment::functional::{
    self as f, CropBox, Interpolation, MixBox, Padding, PaddingMode,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
struct Manifest {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    op: String,
    params: Value,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    tolerance: Tolerance,
}

#[derive(Debug, Deserialize)]
struct TensorSpec {
    file: String,
    dtype: String,
    shape: Vec<usize>,
}

#[derive(Debug, Deserialize)]
struct Tolerance {
    atol: f64,
    max_mismatch_frac: f64,
    hard_max_abs: f64,
}

/// A tensor's data; the shape lives next to it.
#[derive(Debug, Clone, PartialEq)]
enum Data {
    U8(Vec<u8>),
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Data {
    fn dtype(&self) -> &'static str {
        match self {
            Data::U8(_) => "u8",
            Data::F32(_) => "f32",
            Data::I64(_) => "i64",
        }
    }
    fn len(&self) -> usize {
        match self {
            Data::U8(v) => v.len(),
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }
    fn values(&self) -> Vec<f64> {
        match self {
            Data::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Tensor {
    shape: Vec<usize>,
    data: Data,
}

type CaseResult<T> = Result<T, String>;

fn reference_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KINDLING_AUGMENT_REFERENCE") {
        return PathBuf::from(dir);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|d| d.join("shared/conformance/augment"))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| here.join("../../../shared/conformance/augment"))
}

fn load(dir: &Path, spec: &TensorSpec) -> CaseResult<Tensor> {
    let path = dir.join(&spec.file);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let n: usize = spec.shape.iter().product();
    let size = match spec.dtype.as_str() {
        "u8" => 1,
        "f32" => 4,
        "i64" => 8,
        other => return Err(format!("{}: unknown dtype {other}", spec.file)),
    };
    if bytes.len() != n * size {
        return Err(format!(
            "{}: {} bytes, expected {} for shape {:?}",
            spec.file,
            bytes.len(),
            n * size,
            spec.shape
        ));
    }
    let data = match size {
        1 => Data::U8(bytes),
        4 => Data::F32(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        _ => Data::I64(
            bytes
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
        ),
    };
    Ok(Tensor {
        shape: spec.shape.clone(),
        data,
    })
}

// ---------- parameter access ----------

fn param<'a>(p: &'a Value, key: &str) -> CaseResult<&'a Value> {
    p.get(key).ok_or_else(|| format!("missing param `{key}`"))
}

fn as_f64(v: &Value) -> CaseResult<f64> {
    v.as_f64()
        .ok_or_else(|| format!("expected a number, got {v}"))
}

fn as_usize(v: &Value) -> CaseResult<usize> {
    v.as_u64()
        .map(|x| x as usize)
        .ok_or_else(|| format!("expected a non-negative integer, got {v}"))
}

fn as_list(v: &Value) -> CaseResult<&Vec<Value>> {
    v.as_array()
        .ok_or_else(|| format!("expected a list, got {v}"))
}

fn f64_list(v: &Value) -> CaseResult<Vec<f64>> {
    as_list(v)?.iter().map(as_f64).collect()
}

fn usize_list(v: &Value) -> CaseResult<Vec<usize>> {
    as_list(v)?.iter().map(as_usize).collect()
}

/// A scalar or a per-channel list, as torchvision's `fill`/`value` arguments.
fn scalar_or_list(v: &Value) -> CaseResult<Vec<f64>> {
    if v.is_array() {
        f64_list(v)
    } else {
        Ok(vec![as_f64(v)?])
    }
}

fn as_str(v: &Value) -> CaseResult<&str> {
    v.as_str()
        .ok_or_else(|| format!("expected a string, got {v}"))
}

fn interpolation(p: &Value) -> CaseResult<Interpolation> {
    match as_str(param(p, "interpolation")?)? {
        "nearest" => Ok(Interpolation::Nearest),
        "bilinear" => Ok(Interpolation::Bilinear),
        other => Err(format!("unsupported interpolation {other}")),
    }
}

// ---------- images in and out ----------

/// An input image of either dtype, so that each op runs on the dtype the case gives.
enum Img {
    U8(Image<u8>),
    F32(Image<f32>),
}

fn to_image(t: &Tensor) -> CaseResult<Img> {
    let [c, h, w] = <[usize; 3]>::try_from(t.shape.as_slice())
        .map_err(|_| format!("expected CHW, got {:?}", t.shape))?;
    let err = |e: kindling_augment::AugmentError| e.to_string();
    match &t.data {
        Data::U8(v) => Image::from_chw(v.clone(), c, h, w)
            .map(Img::U8)
            .map_err(err),
        Data::F32(v) => Image::from_chw(v.clone(), c, h, w)
            .map(Img::F32)
            .map_err(err),
        Data::I64(_) => Err("an image cannot be i64".into()),
    }
}

fn batch_images(t: &Tensor) -> CaseResult<Vec<Image<f32>>> {
    let [n, c, h, w] = <[usize; 4]>::try_from(t.shape.as_slice())
        .map_err(|_| format!("expected NCHW, got {:?}", t.shape))?;
    let Data::F32(v) = &t.data else {
        return Err("batch must be f32".into());
    };
    v.chunks_exact(c * h * w)
        .take(n)
        .map(|chunk| Image::from_chw(chunk.to_vec(), c, h, w).map_err(|e| e.to_string()))
        .collect()
}

/// Stacks results on a leading axis (the manifest drops it when there is a single result).
fn stack<T: kindling_augment::Pixel>(imgs: Vec<Image<T>>, wrap: fn(Vec<T>) -> Data) -> Tensor {
    let mut shape = vec![imgs.len()];
    shape.extend(imgs.first().map_or([0; 3], Image::shape));
    let data = imgs.into_iter().flat_map(Image::into_vec).collect();
    Tensor {
        shape,
        data: wrap(data),
    }
}

fn stack_u8(imgs: Vec<Image<u8>>) -> Tensor {
    stack(imgs, Data::U8)
}

fn stack_f32(imgs: Vec<Image<f32>>) -> Tensor {
    stack(imgs, Data::F32)
}

/// Runs `op` once per sweep value on an image of either dtype and stacks the results.
fn sweep<V>(
    img: &Img,
    values: &[V],
    op_u8: impl Fn(&Image<u8>, &V) -> kindling_augment::Result<Image<u8>>,
    op_f32: impl Fn(&Image<f32>, &V) -> kindling_augment::Result<Image<f32>>,
) -> CaseResult<Tensor> {
    let err = |e: kindling_augment::AugmentError| e.to_string();
    Ok(match img {
        Img::U8(i) => stack_u8(
            values
                .iter()
                .map(|v| op_u8(i, v))
                .collect::<Result<_, _>>()
                .map_err(err)?,
        ),
        Img::F32(i) => stack_f32(
            values
                .iter()
                .map(|v| op_f32(i, v))
                .collect::<Result<_, _>>()
                .map_err(err)?,
        ),
    })
}

/// [`sweep`] with the same generic expression for both dtypes.
macro_rules! both {
    ($img:expr, $values:expr, |$i:ident, $v:ident| $body:expr) => {
        sweep(
            $img,
            $values,
            |$i: &Image<u8>, $v| $body,
            |$i: &Image<f32>, $v| $body,
        )
    };
}

// ---------- ops ----------

fn run_case(dir: &Path, case: &Case) -> CaseResult<Vec<Tensor>> {
    let inputs: Vec<Tensor> = case
        .inputs
        .iter()
        .map(|s| load(dir, s))
        .collect::<CaseResult<_>>()?;
    let first = inputs.first().ok_or("case has no inputs")?;
    let p = &case.params;
    let e = |e: kindling_augment::AugmentError| e.to_string();
    match case.op.as_str() {
        "to_dtype" => {
            if param(p, "scale")?.as_bool() != Some(true) {
                return Err("only scale=True is implemented".into());
            }
            match (as_str(param(p, "dtype")?)?, to_image(first)?) {
                ("f32", Img::U8(i)) => Ok(vec![stack_f32(vec![f::to_f32(&i)])]),
                ("u8", Img::F32(i)) => Ok(vec![stack_u8(vec![f::to_u8(&i)])]),
                (d, _) => Err(format!("unsupported conversion to {d}")),
            }
        }
        "pad_then_crop" => {
            let padding = Padding::uniform(as_usize(param(p, "padding")?)?);
            let mode = match as_str(param(p, "padding_mode")?)? {
                "constant" => PaddingMode::Constant,
                "edge" => PaddingMode::Edge,
                "reflect" => PaddingMode::Reflect,
                "symmetric" => PaddingMode::Symmetric,
                other => return Err(format!("unknown padding_mode {other}")),
            };
            let fill = scalar_or_list(param(p, "fill")?)?;
            let [h, w] = <[usize; 2]>::try_from(usize_list(param(p, "size")?)?)
                .map_err(|_| "size must be [h, w]")?;
            let positions: Vec<Vec<usize>> = as_list(param(p, "positions_top_left_in_padded")?)?
                .iter()
                .map(usize_list)
                .collect::<CaseResult<_>>()?;
            let fill_u8: Vec<u8> = fill.iter().map(|&v| v as u8).collect();
            let fill_f32: Vec<f32> = fill.iter().map(|&v| v as f32).collect();
            let t = sweep(
                &to_image(first)?,
                &positions,
                |i, pos| f::crop(&f::pad(i, padding, mode, &fill_u8)?, pos[0], pos[1], h, w),
                |i, pos| f::crop(&f::pad(i, padding, mode, &fill_f32)?, pos[0], pos[1], h, w),
            )?;
            Ok(vec![t])
        }
        "horizontal_flip" => Ok(vec![both!(&to_image(first)?, &[()], |i, _v| Ok(
            f::horizontal_flip(i)
        ))?]),
        op @ ("adjust_brightness" | "adjust_contrast" | "adjust_saturation" | "adjust_hue") => {
            let factors = f64_list(param(p, "factors")?)?;
            let img = to_image(first)?;
            let t = match op {
                "adjust_brightness" => both!(&img, &factors, |i, v| f::adjust_brightness(i, *v)),
                "adjust_contrast" => both!(&img, &factors, |i, v| f::adjust_contrast(i, *v)),
                "adjust_saturation" => both!(&img, &factors, |i, v| f::adjust_saturation(i, *v)),
                _ => both!(&img, &factors, |i, v| f::adjust_hue(i, *v)),
            }?;
            Ok(vec![t])
        }
        "resized_crop" => {
            let boxes: Vec<CropBox> = as_list(param(p, "boxes_top_left_height_width")?)?
                .iter()
                .map(|b| match usize_list(b)?.as_slice() {
                    &[top, left, height, width] => Ok(CropBox {
                        top,
                        left,
                        height,
                        width,
                    }),
                    _ => Err(format!("bad box {b}")),
                })
                .collect::<CaseResult<_>>()?;
            let size = <[usize; 2]>::try_from(usize_list(param(p, "size")?)?)
                .map_err(|_| "size must be [h, w]")?;
            let interp = interpolation(p)?;
            let aa = param(p, "antialias")?
                .as_bool()
                .ok_or("antialias must be a bool")?;
            Ok(vec![both!(&to_image(first)?, &boxes, |i, b| {
                f::resized_crop(i, *b, size, interp, aa)
            })?])
        }
        "rotate" => {
            let angles = f64_list(param(p, "angles_deg")?)?;
            let interp = interpolation(p)?;
            let expand = param(p, "expand")?
                .as_bool()
                .ok_or("expand must be a bool")?;
            let center = match p.get("center_xy").or_else(|| p.get("center")) {
                None | Some(Value::Null) => None,
                Some(c) => {
                    Some(<[f64; 2]>::try_from(f64_list(c)?).map_err(|_| "center must be [x, y]")?)
                }
            };
            let fill: Option<Vec<f32>> = match param(p, "fill")? {
                Value::Null => None,
                v => Some(scalar_or_list(v)?.iter().map(|&x| x as f32).collect()),
            };
            let fill = fill.as_deref();
            Ok(vec![both!(&to_image(first)?, &angles, |i, a| f::rotate(
                i, *a, interp, expand, center, fill
            ))?])
        }
        "erase" => {
            let boxes = as_list(param(p, "boxes_i_j_h_w_v")?)?;
            let mut parsed = Vec::new();
            for b in boxes {
                let b = as_list(b)?;
                if b.len() != 5 {
                    return Err(format!("bad erase box {b:?}"));
                }
                let ijhw = b[..4]
                    .iter()
                    .map(as_usize)
                    .collect::<CaseResult<Vec<_>>>()?;
                parsed.push((ijhw, scalar_or_list(&b[4])?));
            }
            let t = sweep(
                &to_image(first)?,
                &parsed,
                |i, (b, v)| {
                    f::erase(
                        i,
                        b[0],
                        b[1],
                        b[2],
                        b[3],
                        &v.iter().map(|&x| x as u8).collect::<Vec<_>>(),
                    )
                },
                |i, (b, v)| {
                    f::erase(
                        i,
                        b[0],
                        b[1],
                        b[2],
                        b[3],
                        &v.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                    )
                },
            )?;
            Ok(vec![t])
        }
        "normalize" => {
            let mean: Vec<f32> = f64_list(param(p, "mean")?)?
                .iter()
                .map(|&x| x as f32)
                .collect();
            let std: Vec<f32> = f64_list(param(p, "std")?)?
                .iter()
                .map(|&x| x as f32)
                .collect();
            let Img::F32(i) = to_image(first)? else {
                return Err("normalize needs f32 input".into());
            };
            Ok(vec![stack_f32(vec![
                f::normalize(&i, &mean, &std).map_err(e)?,
            ])])
        }
        "mixup" | "cutmix" => {
            let batch = batch_images(first)?;
            let labels = labels(inputs.get(1).ok_or("missing labels input")?)?;
            let num_classes = as_usize(param(p, "num_classes")?)?;
            let mixed = if case.op == "mixup" {
                f::mixup(&batch, &labels, as_f64(param(p, "lam")?)?, num_classes).map_err(e)?
            } else {
                let &[x1, y1, x2, y2] = usize_list(param(p, "box_x1_y1_x2_y2")?)?.as_slice() else {
                    return Err("box must be [x1, y1, x2, y2]".into());
                };
                let mixed = f::cutmix(&batch, &labels, MixBox { x1, y1, x2, y2 }, num_classes)
                    .map_err(e)?;
                // The manifest states lambda; it must be the area-corrected one we derive.
                let [_, h, w] = batch[0].shape();
                let lam = 1.0 - ((x2 - x1) * (y2 - y1)) as f64 / (w * h) as f64;
                let stated = as_f64(param(p, "lam_adjusted")?)?;
                if (lam - stated).abs() > 1e-12 {
                    return Err(format!("lam_adjusted {stated} != 1 - area/(W*H) = {lam}"));
                }
                mixed
            };
            let n = mixed.images.len();
            let targets = Tensor {
                shape: vec![n, num_classes],
                data: Data::F32(mixed.targets),
            };
            Ok(vec![stack_f32(mixed.images), targets])
        }
        "pipeline_P1" => {
            let per_image = as_list(param(p, "per_image_params")?)?;
            if per_image.len() != inputs.len() {
                return Err(format!(
                    "{} parameter sets for {} inputs",
                    per_image.len(),
                    inputs.len()
                ));
            }
            let mut out = Vec::new();
            for (t, ip) in inputs.iter().zip(per_image) {
                let Img::U8(img) = to_image(t)? else {
                    return Err("P1 takes u8 images".into());
                };
                out.push(pipeline_p1(&img, ip)?);
            }
            Ok(vec![stack_f32(out)])
        }
        "pipeline_P2" => {
            let per_image = as_list(param(p, "per_image_params")?)?;
            if per_image.len() != inputs.len() {
                return Err(format!(
                    "{} parameter sets for {} inputs",
                    per_image.len(),
                    inputs.len()
                ));
            }
            let mut out = Vec::new();
            for (t, ip) in inputs.iter().zip(per_image) {
                let Img::U8(img) = to_image(t)? else {
                    return Err("P2 takes u8 images".into());
                };
                out.push(pipeline_p2(&img, ip)?);
            }
            Ok(vec![stack_f32(out)])
        }
        other => Err(format!("unknown op `{other}`")),
    }
}

fn labels(t: &Tensor) -> CaseResult<Vec<usize>> {
    let Data::I64(v) = &t.data else {
        return Err("labels must be i64".into());
    };
    v.iter()
        .map(|&l| usize::try_from(l).map_err(|_| format!("negative label {l}")))
        .collect()
}

/// Brightness and contrast on u8 in the given order (0 = brightness, 1 = contrast), as the
/// canonical pipelines' ColorJitter applies them.
fn jitter(mut img: Image<u8>, ip: &Value) -> CaseResult<Image<u8>> {
    let e = |e: kindling_augment::AugmentError| e.to_string();
    for k in usize_list(param(ip, "order")?)? {
        img = match k {
            0 => f::adjust_brightness(&img, as_f64(param(ip, "brightness")?)?).map_err(e)?,
            1 => f::adjust_contrast(&img, as_f64(param(ip, "contrast")?)?).map_err(e)?,
            other => return Err(format!("unknown jitter op {other}")),
        };
    }
    Ok(img)
}

fn flip_if(img: Image<u8>, ip: &Value) -> CaseResult<Image<u8>> {
    Ok(
        if param(ip, "flip")?.as_bool().ok_or("flip must be a bool")? {
            f::horizontal_flip(&img)
        } else {
            img
        },
    )
}

/// P1 (CIFAR-style): pad 4 with zeros -> crop back to the input size at (top, left) -> [hflip]
/// -> brightness/contrast on u8 -> to f32 -> normalize(0.5, 0.5).
fn pipeline_p1(img: &Image<u8>, ip: &Value) -> CaseResult<Image<f32>> {
    let e = |e: kindling_augment::AugmentError| e.to_string();
    let padded = f::pad(img, Padding::uniform(4), PaddingMode::Constant, &[0]).map_err(e)?;
    let (top, left) = (as_usize(param(ip, "top")?)?, as_usize(param(ip, "left")?)?);
    let cropped = f::crop(&padded, top, left, img.height(), img.width()).map_err(e)?;
    let jittered = jitter(flip_if(cropped, ip)?, ip)?;
    f::normalize(&f::to_f32(&jittered), &[0.5; 3], &[0.5; 3]).map_err(e)
}

/// P2 (ImageNet-style): resized_crop(box -> 224, bilinear, antialias) -> [hflip] ->
/// brightness/contrast on u8 -> rotate(angle, nearest, fill 0) -> to f32 -> normalize(ImageNet).
fn pipeline_p2(img: &Image<u8>, ip: &Value) -> CaseResult<Image<f32>> {
    let e = |e: kindling_augment::AugmentError| e.to_string();
    let &[top, left, height, width] =
        usize_list(param(ip, "box_top_left_height_width")?)?.as_slice()
    else {
        return Err("box must be [top, left, height, width]".into());
    };
    let b = CropBox {
        top,
        left,
        height,
        width,
    };
    let resized = f::resized_crop(img, b, [224, 224], Interpolation::Bilinear, true).map_err(e)?;
    let jittered = jitter(flip_if(resized, ip)?, ip)?;
    let angle = as_f64(param(ip, "angle_deg")?)?;
    let rotated = f::rotate(
        &jittered,
        angle,
        Interpolation::Nearest,
        false,
        None,
        Some(&[0.0]),
    )
    .map_err(e)?;
    f::normalize(&f::to_f32(&rotated), &f::IMAGENET_MEAN, &f::IMAGENET_STD).map_err(e)
}

// ---------- comparison ----------

struct Stats {
    max_abs: f64,
    mean_abs: f64,
    mismatch_frac: f64,
    pass: bool,
}

/// The manifest's rule: `max(d) <= hard_max_abs` and `mean(d > atol) <= max_mismatch_frac`.
fn compare(cand: &Tensor, reference: &Tensor, tol: &Tolerance) -> CaseResult<Stats> {
    if cand.data.dtype() != reference.data.dtype() {
        return Err(format!(
            "dtype {} != reference {}",
            cand.data.dtype(),
            reference.data.dtype()
        ));
    }
    // A single stacked result may be stored without the leading axis.
    let strip = |s: &[usize]| {
        s.iter()
            .skip_while(|&&d| d == 1)
            .copied()
            .collect::<Vec<_>>()
    };
    if strip(&cand.shape) != strip(&reference.shape) || cand.data.len() != reference.data.len() {
        return Err(format!(
            "shape {:?} != reference {:?}",
            cand.shape, reference.shape
        ));
    }
    let (c, r) = (cand.data.values(), reference.data.values());
    let n = c.len().max(1) as f64;
    let (mut max_abs, mut sum, mut over, mut nan) = (0.0f64, 0.0, 0usize, false);
    for (a, b) in c.iter().zip(&r) {
        let d = (a - b).abs();
        nan |= d.is_nan();
        max_abs = max_abs.max(d);
        sum += d;
        over += usize::from(d > tol.atol);
    }
    let mismatch_frac = over as f64 / n;
    let pass = !nan && max_abs <= tol.hard_max_abs && mismatch_frac <= tol.max_mismatch_frac;
    Ok(Stats {
        max_abs,
        mean_abs: sum / n,
        mismatch_frac,
        pass,
    })
}

#[test]
fn torchvision_conformance() {
    check_manifest("CPU", run_case);
}

/// The batched tensor path on flex: every case through `kindling_augment::batched`, with the
/// sweep values as per-sample parameters of one batch.
#[test]
fn tensor_path_conformance_flex() {
    let device = burn::tensor::Device::flex();
    check_manifest("tensor (flex)", |dir, case| {
        tensor_path::run_case(dir, case, &device)
    });
}

/// The same on wgpu through lavapipe (real GPU kernels on the CPU); `cargo xtask test` runs it
/// where a Vulkan driver exists.
#[cfg(feature = "wgpu")]
#[test]
#[ignore = "needs a Vulkan driver (lavapipe); run by `cargo xtask test`"]
fn tensor_path_conformance_wgpu() {
    let device = burn::tensor::Device::wgpu(burn::tensor::DeviceKind::Cpu);
    check_manifest("tensor (wgpu)", |dir, case| {
        tensor_path::run_case(dir, case, &device)
    });
}

fn check_manifest(label: &str, run_case: impl Fn(&Path, &Case) -> CaseResult<Vec<Tensor>>) {
    println!("conformance of the {label} path");
    let dir = reference_dir();
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap_or_else(|e| {
        panic!(
            "conformance reference not found at {} ({e}); set KINDLING_AUGMENT_REFERENCE to the folder \
             holding manifest.json",
            manifest_path.display()
        )
    });
    let manifest: Manifest = serde_json::from_str(&text).expect("manifest.json does not parse");
    assert!(!manifest.cases.is_empty(), "manifest has no cases");

    let mut failures = Vec::new();
    let mut outputs_passed = 0;
    let mut outputs_total = 0;
    println!(
        "{:<44} {:<18} {:>3} {:>11} {:>11} {:>9}  result",
        "case", "op", "out", "max_abs", "mean_abs", "mism_frac"
    );
    for case in &manifest.cases {
        let result = run_case(&dir, case).and_then(|cands| {
            if cands.len() != case.outputs.len() {
                return Err(format!(
                    "{} outputs, reference has {}",
                    cands.len(),
                    case.outputs.len()
                ));
            }
            cands
                .iter()
                .zip(&case.outputs)
                .map(|(cand, spec)| compare(cand, &load(&dir, spec)?, &case.tolerance))
                .collect::<CaseResult<Vec<_>>>()
        });
        match result {
            Ok(stats) => {
                for (k, s) in stats.iter().enumerate() {
                    outputs_total += 1;
                    outputs_passed += usize::from(s.pass);
                    println!(
                        "{:<44} {:<18} {:>3} {:>11.4e} {:>11.4e} {:>9.5}  {}",
                        case.name,
                        case.op,
                        k,
                        s.max_abs,
                        s.mean_abs,
                        s.mismatch_frac,
                        if s.pass { "pass" } else { "FAIL" }
                    );
                }
                if stats.iter().any(|s| !s.pass) {
                    failures.push(format!(
                        "{}: outside tolerance {:?}",
                        case.name, case.tolerance
                    ));
                }
            }
            Err(msg) => {
                outputs_total += case.outputs.len();
                println!("{:<44} {:<18}   -  FAIL: {msg}", case.name, case.op);
                failures.push(format!("{}: {msg}", case.name));
            }
        }
    }
    println!(
        "\n{} of {} cases pass ({outputs_passed} of {outputs_total} output tensors)",
        manifest.cases.len() - failures.len(),
        manifest.cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// The manifest's ops on the batched tensor path (`kindling_augment::batched`).
mod tensor_path {
    use burn::tensor::{Device, TensorData};
    use kindling_augment::batched::{self as b, Dtype, ops};
    use kindling_augment::{Applied, Transform, pipelines};

    use super::*;

    fn err(e: kindling_augment::AugmentError) -> String {
        e.to_string()
    }

    /// `copies` copies of a CHW reference tensor as one batch.
    fn batch_of(
        t: &Tensor,
        copies: usize,
        device: &Device,
    ) -> CaseResult<(b::DeviceBatch, [usize; 3])> {
        let [c, h, w] = <[usize; 3]>::try_from(t.shape.as_slice())
            .map_err(|_| format!("expected CHW, got {:?}", t.shape))?;
        let (values, dtype): (Vec<f32>, Dtype) = match &t.data {
            Data::U8(v) => (v.iter().map(|&x| f32::from(x)).collect(), Dtype::U8),
            Data::F32(v) => (v.clone(), Dtype::F32),
            Data::I64(_) => return Err("an image cannot be i64".into()),
        };
        let data: Vec<f32> = (0..copies).flat_map(|_| values.iter().copied()).collect();
        let pixels =
            burn::tensor::Tensor::from_data(TensorData::new(data, [copies, c, h, w]), device);
        Ok((b::DeviceBatch { pixels, dtype }, [c, h, w]))
    }

    /// A batch result as a reference-format tensor of the batch's dtype.
    fn output(x: burn::tensor::Tensor<4>, dtype: Dtype) -> CaseResult<Tensor> {
        let shape = x.dims().to_vec();
        let v: Vec<f32> = x
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?;
        let data = match dtype {
            Dtype::U8 => Data::U8(v.iter().map(|&x| x as u8).collect()),
            Dtype::F32 => Data::F32(v),
        };
        Ok(Tensor { shape, data })
    }

    fn output_2d(x: burn::tensor::Tensor<2>) -> CaseResult<Tensor> {
        let shape = x.dims().to_vec();
        let v: Vec<f32> = x
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?;
        Ok(Tensor {
            shape,
            data: Data::F32(v),
        })
    }

    /// Concatenates single-sample results along the batch axis.
    fn concat(parts: Vec<Tensor>) -> CaseResult<Tensor> {
        let first = parts.first().ok_or("no results")?;
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        let data = match &first.data {
            Data::U8(_) => Data::U8(
                parts
                    .iter()
                    .flat_map(|p| match &p.data {
                        Data::U8(v) => v.clone(),
                        _ => vec![],
                    })
                    .collect(),
            ),
            _ => Data::F32(
                parts
                    .iter()
                    .flat_map(|p| match &p.data {
                        Data::F32(v) => v.clone(),
                        _ => vec![],
                    })
                    .collect(),
            ),
        };
        Ok(Tensor { shape, data })
    }

    pub(super) fn run_case(dir: &Path, case: &Case, device: &Device) -> CaseResult<Vec<Tensor>> {
        let inputs: Vec<Tensor> = case
            .inputs
            .iter()
            .map(|s| load(dir, s))
            .collect::<CaseResult<_>>()?;
        let first = inputs.first().ok_or("case has no inputs")?;
        let p = &case.params;
        match case.op.as_str() {
            "to_dtype" => {
                let (x, _) = batch_of(first, 1, device)?;
                match (as_str(param(p, "dtype")?)?, x.dtype) {
                    ("f32", Dtype::U8) => Ok(vec![output(ops::to_unit(x.pixels), Dtype::F32)?]),
                    ("u8", Dtype::F32) => Ok(vec![output(ops::to_u8_values(x.pixels), Dtype::U8)?]),
                    (d, _) => Err(format!("unsupported conversion to {d}")),
                }
            }
            "pad_then_crop" => {
                let padding = Padding::uniform(as_usize(param(p, "padding")?)?);
                let mode = match as_str(param(p, "padding_mode")?)? {
                    "constant" => PaddingMode::Constant,
                    "edge" => PaddingMode::Edge,
                    "reflect" => PaddingMode::Reflect,
                    "symmetric" => PaddingMode::Symmetric,
                    other => return Err(format!("unknown padding_mode {other}")),
                };
                let fill: Vec<f32> = scalar_or_list(param(p, "fill")?)?
                    .iter()
                    .map(|&v| v as f32)
                    .collect();
                let size = <[usize; 2]>::try_from(usize_list(param(p, "size")?)?)
                    .map_err(|_| "size must be [h, w]")?;
                let positions: Vec<(usize, usize)> =
                    as_list(param(p, "positions_top_left_in_padded")?)?
                        .iter()
                        .map(|v| {
                            let v = usize_list(v)?;
                            Ok((v[0], v[1]))
                        })
                        .collect::<CaseResult<_>>()?;
                let (x, _) = batch_of(first, positions.len(), device)?;
                let y = ops::pad_crop(x.pixels, padding, mode, &fill, &positions, size, None)
                    .map_err(err)?;
                Ok(vec![output(y, x.dtype)?])
            }
            "horizontal_flip" => {
                let (x, _) = batch_of(first, 1, device)?;
                Ok(vec![output(
                    ops::horizontal_flip(x.pixels, &[true]).map_err(err)?,
                    x.dtype,
                )?])
            }
            op @ ("adjust_brightness" | "adjust_contrast" | "adjust_saturation" | "adjust_hue") => {
                let factors = f64_list(param(p, "factors")?)?;
                let (x, _) = batch_of(first, factors.len(), device)?;
                let y = match op {
                    "adjust_brightness" => ops::adjust_brightness(x.pixels, &factors, x.dtype),
                    "adjust_contrast" => ops::adjust_contrast(x.pixels, &factors, x.dtype),
                    "adjust_saturation" => ops::adjust_saturation(x.pixels, &factors, x.dtype),
                    _ => ops::adjust_hue(x.pixels, &factors, x.dtype),
                }
                .map_err(err)?;
                Ok(vec![output(y, x.dtype)?])
            }
            "resized_crop" => {
                let boxes: Vec<CropBox> = as_list(param(p, "boxes_top_left_height_width")?)?
                    .iter()
                    .map(|v| match usize_list(v)?.as_slice() {
                        &[top, left, height, width] => Ok(CropBox {
                            top,
                            left,
                            height,
                            width,
                        }),
                        _ => Err(format!("bad box {v}")),
                    })
                    .collect::<CaseResult<_>>()?;
                let size = <[usize; 2]>::try_from(usize_list(param(p, "size")?)?)
                    .map_err(|_| "size must be [h, w]")?;
                let aa = param(p, "antialias")?
                    .as_bool()
                    .ok_or("antialias must be a bool")?;
                let (x, _) = batch_of(first, boxes.len(), device)?;
                let y = ops::resized_crop(x.pixels, &boxes, size, interpolation(p)?, aa, x.dtype)
                    .map_err(err)?;
                Ok(vec![output(y, x.dtype)?])
            }
            "rotate" => {
                let angles = f64_list(param(p, "angles_deg")?)?;
                let interp = interpolation(p)?;
                let expand = param(p, "expand")?
                    .as_bool()
                    .ok_or("expand must be a bool")?;
                let center = match p.get("center_xy").or_else(|| p.get("center")) {
                    None | Some(Value::Null) => None,
                    Some(c) => Some(
                        <[f64; 2]>::try_from(f64_list(c)?).map_err(|_| "center must be [x, y]")?,
                    ),
                };
                let fill: Option<Vec<f32>> = match param(p, "fill")? {
                    Value::Null => None,
                    v => Some(scalar_or_list(v)?.iter().map(|&x| x as f32).collect()),
                };
                // Expanded sizes differ per angle: one batch per angle then.
                let groups: Vec<Vec<f64>> = if expand {
                    angles.iter().map(|&a| vec![a]).collect()
                } else {
                    vec![angles]
                };
                let mut parts = Vec::new();
                for g in groups {
                    let (x, _) = batch_of(first, g.len(), device)?;
                    let y = ops::rotate(
                        x.pixels,
                        &g,
                        interp,
                        expand,
                        center,
                        fill.as_deref(),
                        x.dtype,
                    )
                    .map_err(err)?;
                    parts.push(output(y, x.dtype)?);
                }
                Ok(vec![concat(parts)?])
            }
            "erase" => {
                let mut parts = Vec::new();
                for bx in as_list(param(p, "boxes_i_j_h_w_v")?)? {
                    let bx = as_list(bx)?;
                    if bx.len() != 5 {
                        return Err(format!("bad erase box {bx:?}"));
                    }
                    let v = bx[..4]
                        .iter()
                        .map(as_usize)
                        .collect::<CaseResult<Vec<_>>>()?;
                    let value: Vec<f32> =
                        scalar_or_list(&bx[4])?.iter().map(|&x| x as f32).collect();
                    let (x, _) = batch_of(first, 1, device)?;
                    let eb = ops::EraseBox {
                        top: v[0],
                        left: v[1],
                        height: v[2],
                        width: v[3],
                    };
                    let y = ops::erase(x.pixels, &[Some(eb)], &value, None).map_err(err)?;
                    parts.push(output(y, x.dtype)?);
                }
                Ok(vec![concat(parts)?])
            }
            "normalize" => {
                let list = |k: &str| -> CaseResult<Vec<f32>> {
                    Ok(f64_list(param(p, k)?)?.iter().map(|&x| x as f32).collect())
                };
                let (x, _) = batch_of(first, 1, device)?;
                if x.dtype != Dtype::F32 {
                    return Err("normalize needs f32 input".into());
                }
                let y = ops::normalize(x.pixels, &list("mean")?, &list("std")?).map_err(err)?;
                Ok(vec![output(y, Dtype::F32)?])
            }
            "mixup" | "cutmix" => {
                let [n, c, h, w] =
                    <[usize; 4]>::try_from(first.shape.as_slice()).map_err(|_| "expected NCHW")?;
                let Data::F32(v) = &first.data else {
                    return Err("batch must be f32".into());
                };
                let x = burn::tensor::Tensor::from_data(
                    TensorData::new(v.clone(), [n, c, h, w]),
                    device,
                );
                let labels = labels(inputs.get(1).ok_or("missing labels input")?)?;
                let k = as_usize(param(p, "num_classes")?)?;
                let (images, targets) = if case.op == "mixup" {
                    b::mix::mixup(x, &labels, as_f64(param(p, "lam")?)?, k, 0.0).map_err(err)?
                } else {
                    let &[x1, y1, x2, y2] = usize_list(param(p, "box_x1_y1_x2_y2")?)?.as_slice()
                    else {
                        return Err("box must be [x1, y1, x2, y2]".into());
                    };
                    let (img, t, lam) =
                        b::mix::cutmix(x, &labels, MixBox { x1, y1, x2, y2 }, k, 0.0)
                            .map_err(err)?;
                    let stated = as_f64(param(p, "lam_adjusted")?)?;
                    if (lam - stated).abs() > 1e-12 {
                        return Err(format!("lam {lam} != lam_adjusted {stated}"));
                    }
                    (img, t)
                };
                Ok(vec![output(images, Dtype::F32)?, output_2d(targets)?])
            }
            op @ ("pipeline_P1" | "pipeline_P2") => {
                // The seed pipelines replayed with the manifest's per-image parameters: the
                // tensor path runs the same `Transform` the CPU path runs.
                let per_image = as_list(param(p, "per_image_params")?)?;
                let (pipeline, params): (Transform, Vec<Vec<Applied>>) = if op == "pipeline_P1" {
                    let params = per_image.iter().map(p1_params).collect::<CaseResult<_>>()?;
                    (pipelines::cifar().into(), params)
                } else {
                    let params = per_image.iter().map(p2_params).collect::<CaseResult<_>>()?;
                    (pipelines::imagenet().into(), params)
                };
                let mut parts = Vec::new();
                for (t, ps) in inputs.iter().zip(params) {
                    let (x, _) = batch_of(t, 1, device)?;
                    let y = b::replay_batch_with(b::Kernels::TensorOps, &pipeline, x, &[ps])
                        .map_err(err)?;
                    parts.push(output(y.pixels, y.dtype)?);
                }
                Ok(vec![concat(parts)?])
            }
            other => Err(format!("unknown op `{other}`")),
        }
    }

    fn jitter_params(ip: &Value) -> CaseResult<Applied> {
        let mut order: Vec<u8> = usize_list(param(ip, "order")?)?
            .iter()
            .map(|&k| k as u8)
            .collect();
        // The two disabled adjustments (saturation, hue) fill the permutation.
        let missing: Vec<u8> = (0..4u8).filter(|k| !order.contains(k)).collect();
        order.extend(missing);
        Ok(Applied::ColorJitter {
            order: <[u8; 4]>::try_from(order).map_err(|_| "order must list 2 ops")?,
            brightness: Some(as_f64(param(ip, "brightness")?)?),
            contrast: Some(as_f64(param(ip, "contrast")?)?),
            saturation: None,
            hue: None,
        })
    }

    fn flip_param(ip: &Value) -> CaseResult<Applied> {
        Ok(Applied::RandomHorizontalFlip {
            flip: param(ip, "flip")?.as_bool().ok_or("flip must be a bool")?,
        })
    }

    fn p1_params(ip: &Value) -> CaseResult<Vec<Applied>> {
        Ok(vec![
            Applied::RandomCrop {
                top: as_usize(param(ip, "top")?)?,
                left: as_usize(param(ip, "left")?)?,
            },
            flip_param(ip)?,
            jitter_params(ip)?,
        ])
    }

    fn p2_params(ip: &Value) -> CaseResult<Vec<Applied>> {
        let &[top, left, height, width] =
            usize_list(param(ip, "box_top_left_height_width")?)?.as_slice()
        else {
            return Err("box must be [top, left, height, width]".into());
        };
        Ok(vec![
            Applied::RandomResizedCrop {
                top,
                left,
                height,
                width,
            },
            flip_param(ip)?,
            jitter_params(ip)?,
            Applied::RandomRotation {
                angle: as_f64(param(ip, "angle_deg")?)?,
            },
        ])
    }
}
