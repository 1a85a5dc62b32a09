//! Tensor collectives, including a group mixing backends.

use std::time::Duration;

use burn::tensor::{Device, Tensor, TensorData};
use kindling_dist::{
    Communicator, DistError, LocalGroup, ReduceOp, all_reduce_tensor, broadcast_tensor,
};

fn reduce_on(devices: &[Device]) {
    let out = LocalGroup::run(devices, Duration::from_secs(60), |comm, device| {
        let r = comm.rank() as f32;
        let t = Tensor::<2>::from_data(
            TensorData::new(vec![r, r + 1.0, 2.0 * r, 1.0], [2, 2]),
            device,
        );
        let sum = all_reduce_tensor(comm, t.clone(), ReduceOp::Sum)?;
        let mean = all_reduce_tensor(comm, t.clone(), ReduceOp::Mean)?;
        let bcast = broadcast_tensor(comm, t, 1)?;
        assert_eq!(&sum.device(), device);
        Ok::<_, DistError>([sum, mean, bcast].map(|t| t.try_into_vec_as::<f32>().expect("read")))
    })
    .expect("group");
    let n = devices.len() as f32;
    let s = n * (n - 1.0) / 2.0;
    for o in out {
        let [sum, mean, bcast] = o.expect("rank ok");
        assert_eq!(sum, vec![s, s + n, 2.0 * s, n]);
        assert_eq!(mean, vec![s / n, (s + n) / n, 2.0 * s / n, 1.0]);
        assert_eq!(bcast, vec![1.0, 2.0, 2.0, 1.0]);
    }
}

#[test]
fn tensor_collectives_on_flex() {
    reduce_on(&[Device::flex(), Device::flex(), Device::flex()]);
}

#[test]
fn tensor_collectives_on_flex_autodiff() {
    reduce_on(&[Device::flex().autodiff(), Device::flex().autodiff()]);
}

#[cfg(feature = "wgpu")]
#[test]
#[ignore = "needs a Vulkan driver: run by cargo xtask test"]
fn mixed_backend_group_flex_and_wgpu() {
    reduce_on(&[Device::flex(), Device::wgpu(burn::tensor::DeviceKind::Cpu)]);
}
