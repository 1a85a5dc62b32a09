//! Data-parallel training on top of a [`Communicator`]: the same model on every rank, parameters
//! broadcast from rank 0 at start, gradients averaged in buckets before each optimizer step.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Tensor};

use crate::comm::{Communicator, ReduceOp};
use crate::error::{DistError, Result};
use crate::plan::{
    DEFAULT_BUCKET_CAP_BYTES, DEFAULT_FIRST_BUCKET_CAP_BYTES, ParamMeta, check_same_params,
    decode_meta, encode_meta, plan_buckets,
};
use crate::tensor::{from_host, from_host_parts, to_host};

/// Bytes per element of the host staging buffers (gradients travel as `f32`).
const STAGING_BYTES: usize = 4;

/// Settings of [`Ddp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DdpConfig {
    /// Cap of each gradient bucket, in bytes of `f32` staging (default 25 MiB).
    pub bucket_cap_bytes: usize,
    /// Cap of the first bucket (the last parameters), in bytes (default 1 MiB).
    pub first_bucket_cap_bytes: usize,
    /// Rank whose parameters [`Ddp::prepare`] broadcasts (default 0).
    pub root: usize,
}

impl Default for DdpConfig {
    fn default() -> Self {
        Self {
            bucket_cap_bytes: DEFAULT_BUCKET_CAP_BYTES,
            first_bucket_cap_bytes: DEFAULT_FIRST_BUCKET_CAP_BYTES,
            root: 0,
        }
    }
}

impl DdpConfig {
    /// Sets both bucket caps, in bytes.
    #[must_use]
    pub fn with_bucket_caps(
        mut self,
        first_bucket_cap_bytes: usize,
        bucket_cap_bytes: usize,
    ) -> Self {
        self.first_bucket_cap_bytes = first_bucket_cap_bytes;
        self.bucket_cap_bytes = bucket_cap_bytes;
        self
    }
}

/// Data-parallel gradient synchronisation for one rank, for any [`Module`] and any backend.
///
/// Per rank: [`prepare`](Self::prepare) the model once (checks that all ranks have the same
/// parameters and copies rank 0's values everywhere), then each step turn the loss's gradients
/// into [`GradientsParams`] and pass them through [`sync`](Self::sync) before the optimizer step.
/// For gradient accumulation, pass the gradients of all but the last micro-step to
/// [`no_sync`](Self::no_sync): they are summed locally without communication, and the next
/// `sync` averages the sum across ranks (scale the loss by `1 / micro_steps` for a mean).
///
/// Communication is host-staged and runs after backward (no overlap with compute).
#[derive(Debug)]
pub struct Ddp<C: Communicator> {
    comm: C,
    config: DdpConfig,
    accumulated: Option<GradientsParams>,
    micro_steps: usize,
    /// The bucket buffer, kept between steps: a fresh allocation of tens of MB costs more in
    /// page faults than the copy into it.
    bucket: Vec<f32>,
}

impl<C: Communicator> Ddp<C> {
    /// Wraps a rank's communicator.
    pub fn new(comm: C, config: DdpConfig) -> Result<Self> {
        if config.bucket_cap_bytes == 0 || config.first_bucket_cap_bytes == 0 {
            return Err(DistError::Invalid("bucket caps must be positive".into()));
        }
        if config.root >= comm.world_size() {
            return Err(DistError::Invalid(format!(
                "root {} is not a rank of a group of {}",
                config.root,
                comm.world_size()
            )));
        }
        Ok(Self {
            comm,
            config,
            accumulated: None,
            micro_steps: 0,
            bucket: Vec::new(),
        })
    }

    /// The communicator.
    pub fn comm(&mut self) -> &mut C {
        &mut self.comm
    }

    /// The configuration.
    pub fn config(&self) -> &DdpConfig {
        &self.config
    }

    /// Gives back the communicator.
    pub fn into_comm(self) -> C {
        self.comm
    }

    /// Micro-steps accumulated by [`no_sync`](Self::no_sync) since the last [`sync`](Self::sync).
    pub fn pending_micro_steps(&self) -> usize {
        self.micro_steps
    }

    /// Checks the parameters agree across ranks ([`check_params`](Self::check_params)), then
    /// copies the root's values to every rank ([`broadcast_params`](Self::broadcast_params)).
    pub fn prepare<M: Module>(&mut self, module: M) -> Result<M> {
        self.check_params(&module)?;
        self.broadcast_params(module)
    }

    /// Checks (via an all-gather of metadata) that every rank has the same float parameters:
    /// same module paths, shapes and dtypes, in the same order. On a mismatch every rank gets
    /// [`DistError::ParamMismatch`] naming the parameter and the differing ranks.
    pub fn check_params<M: Module>(&mut self, module: &M) -> Result<()> {
        let mine = param_meta(module);
        let gathered = self.comm.all_gather_bytes(&encode_meta(&mine))?;
        let per_rank = gathered
            .iter()
            .map(|b| decode_meta(b))
            .collect::<Result<Vec<_>>>()?;
        check_same_params(&per_rank)
    }

    /// Copies the root rank's float parameter values into every rank's module (on each rank's
    /// own device and dtype), in buckets.
    pub fn broadcast_params<M: Module>(&mut self, module: M) -> Result<M> {
        let mut reader = ReadParams {
            values: Vec::new(),
            error: None,
        };
        module.visit(&mut reader);
        if let Some(e) = reader.error {
            // Tell the peers now rather than let them wait out the timeout.
            self.comm.abort(&e.to_string());
            return Err(e);
        }
        let mut values = reader.values;
        let bytes: Vec<usize> = values.iter().map(|v| v.len() * STAGING_BYTES).collect();
        let n = values.len();
        for bucket in plan_buckets(
            &bytes,
            self.config.first_bucket_cap_bytes,
            self.config.bucket_cap_bytes,
        ) {
            let params: Vec<usize> = bucket.map(|pos| n - 1 - pos).collect();
            let mut buf: Vec<f32> = params
                .iter()
                .flat_map(|i| values[*i].iter().copied())
                .collect();
            self.comm.broadcast(&mut buf, self.config.root)?;
            let mut offset = 0;
            for i in params {
                let len = values[i].len();
                values[i].copy_from_slice(&buf[offset..offset + len]);
                offset += len;
            }
        }
        let mut writer = WriteParams {
            values: values.into_iter().map(Some).collect(),
            next: 0,
        };
        Ok(module.map(&mut writer))
    }

    /// Accumulates this micro-step's gradients locally (on device, no communication).
    pub fn no_sync<M: Module>(&mut self, module: &M, grads: GradientsParams) -> Result<()> {
        self.accumulated = Some(match self.accumulated.take() {
            None => grads,
            Some(acc) => add_grads(module, acc, grads),
        });
        self.micro_steps += 1;
        Ok(())
    }

    /// Averages the gradients (plus any accumulated by [`no_sync`](Self::no_sync)) across ranks.
    ///
    /// Parameters are all-reduced in buckets, last parameters first. A parameter without a
    /// gradient on some ranks counts as zero there; one without a gradient on every rank stays
    /// without one. Gradients of ids that aren't parameters of `module` are left untouched.
    pub fn sync<M: Module>(
        &mut self,
        module: &M,
        grads: GradientsParams,
    ) -> Result<GradientsParams> {
        let mut grads = match self.accumulated.take() {
            None => grads,
            Some(acc) => add_grads(module, acc, grads),
        };
        self.micro_steps = 0;

        let mut take = TakeGrads {
            grads: &mut grads,
            taken: Vec::new(),
            error: None,
        };
        module.visit(&mut take);
        if let Some(e) = take.error {
            // Tell the peers now rather than let them wait out the timeout.
            self.comm.abort(&e.to_string());
            return Err(e);
        }
        let mut taken = take.taken;
        let world = self.comm.world_size() as f32;
        let bytes: Vec<usize> = taken.iter().map(|t| t.numel * STAGING_BYTES).collect();
        let n = taken.len();
        for bucket in plan_buckets(
            &bytes,
            self.config.first_bucket_cap_bytes,
            self.config.bucket_cap_bytes,
        ) {
            let params: Vec<usize> = bucket.map(|pos| n - 1 - pos).collect();
            // Gradients (zeros where absent), then one presence flag per parameter.
            let mut buf = std::mem::take(&mut self.bucket);
            buf.clear();
            for i in &params {
                match &taken[*i].values {
                    Some(v) => buf.extend_from_slice(v),
                    None => buf.extend(std::iter::repeat_n(0.0, taken[*i].numel)),
                }
            }
            buf.extend(
                params
                    .iter()
                    .map(|i| if taken[*i].values.is_some() { 1.0 } else { 0.0 }),
            );
            self.comm.all_reduce(&mut buf, ReduceOp::Sum)?;
            let flags_at = buf.len() - params.len();
            let mut offset = 0;
            for (k, i) in params.iter().enumerate() {
                let numel = taken[*i].numel;
                let slice = &buf[offset..offset + numel];
                offset += numel;
                if buf[flags_at + k] > 0.0 {
                    // Reuse this rank's own gradient buffer for the mean when it has one.
                    let mut mean = taken[*i].values.take().unwrap_or_default();
                    mean.clear();
                    mean.extend(slice.iter().map(|g| g / world));
                    taken[*i].values = Some(mean);
                } else {
                    taken[*i].values = None;
                }
            }
            self.bucket = buf;
        }
        let mut put = PutGrads {
            grads: &mut grads,
            taken: taken.into_iter(),
        };
        module.visit(&mut put);
        Ok(grads)
    }
}

/// Metadata of every float parameter, in visiting order.
pub(crate) fn param_meta<M: Module>(module: &M) -> Vec<ParamMeta> {
    let mut v = MetaVisitor {
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

struct MetaVisitor {
    path: Vec<String>,
    out: Vec<ParamMeta>,
}

impl ModuleVisitor for MetaVisitor {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        self.out.push(ParamMeta {
            path: self.path.join("."),
            shape: value.shape().to_vec(),
            dtype: format!("{:?}", value.dtype()),
        });
    }
}

struct ReadParams {
    values: Vec<Vec<f32>>,
    error: Option<DistError>,
}

impl ModuleVisitor for ReadParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match to_host(param.val()) {
            Ok(v) => self.values.push(v),
            Err(e) => {
                self.error.get_or_insert(e);
                self.values.push(Vec::new());
            }
        }
    }
}

struct WriteParams {
    values: Vec<Option<Vec<f32>>>,
    next: usize,
}

impl ModuleMapper for WriteParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let values = self.values.get_mut(self.next).and_then(Option::take);
        self.next += 1;
        match values {
            Some(values) => param.map(|tensor| {
                let require_grad = tensor.is_require_grad();
                let fresh = from_host(values, &tensor);
                if require_grad {
                    fresh.require_grad()
                } else {
                    fresh
                }
            }),
            None => param,
        }
    }
}

struct Taken {
    id: ParamId,
    numel: usize,
    values: Option<Vec<f32>>,
    /// Device, dtype and shape of the gradient, when this rank had one.
    layout: Option<(Device, DType, Vec<usize>)>,
}

struct TakeGrads<'a> {
    grads: &'a mut GradientsParams,
    taken: Vec<Taken>,
    error: Option<DistError>,
}

impl ModuleVisitor for TakeGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let numel = param.val().shape().num_elements();
        let (values, layout) = match self.grads.remove::<D>(param.id) {
            Some(grad) => {
                let layout = (grad.device(), grad.dtype(), grad.shape().to_vec());
                match to_host(grad) {
                    Ok(v) => (Some(v), Some(layout)),
                    Err(e) => {
                        self.error.get_or_insert(e);
                        (None, None)
                    }
                }
            }
            None => (None, None),
        };
        self.taken.push(Taken {
            id: param.id,
            numel,
            values,
            layout,
        });
    }
}

struct PutGrads<'a> {
    grads: &'a mut GradientsParams,
    taken: std::vec::IntoIter<Taken>,
}

impl ModuleVisitor for PutGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(taken) = self.taken.next() else {
            return;
        };
        let Some(values) = taken.values else { return };
        // A gradient absent on this rank goes where gradients live: the parameter's device
        // without autodiff.
        let (device, dtype, shape) = match taken.layout {
            Some(layout) => layout,
            None => {
                let value = param.val();
                (
                    value.device().inner(),
                    value.dtype(),
                    value.shape().to_vec(),
                )
            }
        };
        self.grads
            .register::<D>(taken.id, from_host_parts(values, shape, &device, dtype));
    }
}

/// `acc + new` per parameter of `module` (a gradient present in only one is kept as is).
fn add_grads<M: Module>(module: &M, acc: GradientsParams, new: GradientsParams) -> GradientsParams {
    let mut adder = AddGrads { acc, new };
    module.visit(&mut adder);
    adder.acc
}

struct AddGrads {
    acc: GradientsParams,
    new: GradientsParams,
}

impl ModuleVisitor for AddGrads {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let sum = match (
            self.acc.remove::<D>(param.id),
            self.new.remove::<D>(param.id),
        ) {
            (Some(a), Some(b)) => a + b,
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return,
        };
        self.acc.register::<D>(param.id, sum);
    }
}
