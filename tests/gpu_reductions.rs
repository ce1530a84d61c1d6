//! Long reductions on the wgpu backend agree with the CPU. burn 0.22's wgpu `sum_dim` /
//! `mean_dim` go wrong from about 2^16 elements along the reduced axis (its GroupNorm with them,
//! which `model::sd::group_norm` replaces); `model::reduce` sums long axes in pieces. These are
//! the shapes training meets: bias gradients over batch x tokens rows, the DINO loss over 65,536+
//! prototypes.

use burn::tensor::{Device, Tensor, TensorData};
use dinoscope::model::reduce::{log_softmax, mean_dim, softmax, sum_dim};

fn values(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect()
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn long_sums_and_means_on_wgpu_match_the_cpu() {
    let gpu = dinoscope::model::backend::gpu().unwrap_or_else(|e| {
        panic!("no wgpu adapter, so the GPU reductions cannot be checked: {e}")
    });
    let cpu = Device::flex();
    for (rows, cols) in [(65_536 + 17, 3), (262_144, 2), (3, 200_003)] {
        let data = values(rows * cols);
        let tensor = |device: &Device| -> Tensor<2> {
            Tensor::from_data(TensorData::new(data.clone(), [rows, cols]), device)
        };
        for dim in [0, 1] {
            let on = |device: &Device| {
                (
                    host(sum_dim(tensor(device), dim)),
                    host(mean_dim(tensor(device), dim)),
                    host(tensor(device).sum()),
                )
            };
            let (sum_cpu, mean_cpu, total_cpu) = on(&cpu);
            let (sum_gpu, mean_gpu, total_gpu) = on(&gpu.device);
            let scale = data.iter().map(|v| v.abs()).sum::<f32>().max(1.0);
            let sum_error = worst(&sum_cpu, &sum_gpu) / scale;
            let mean_error = worst(&mean_cpu, &mean_gpu);
            let total_error = worst(&total_cpu, &total_gpu) / scale;
            println!(
                "{rows} x {cols}, dim {dim}: sum {sum_error:e}, mean {mean_error:e}, total {total_error:e}"
            );

            assert!(
                sum_error < 1e-5,
                "{rows}x{cols} sum_dim({dim}): {sum_error}"
            );
            assert!(
                mean_error < 1e-4,
                "{rows}x{cols} mean_dim({dim}): {mean_error}"
            );
            assert!(total_error < 1e-5, "{rows}x{cols} sum: {total_error}");
        }
    }
}

#[test]
fn softmax_over_a_wide_head_on_wgpu_matches_the_cpu() {
    let gpu = dinoscope::model::backend::gpu().unwrap_or_else(|e| {
        panic!("no wgpu adapter, so the GPU reductions cannot be checked: {e}")
    });
    let cpu = Device::flex();
    // DINO's official head has 65,536 prototypes; one more crosses burn's limit.
    for n in [65_536, 100_003] {
        let data = values(2 * n);
        let tensor = |device: &Device| -> Tensor<2> {
            Tensor::from_data(TensorData::new(data.clone(), [2, n]), device)
        };
        let reference = host(softmax(tensor(&cpu), 1));
        let ours = host(softmax(tensor(&gpu.device), 1));
        let log = host(log_softmax(tensor(&gpu.device), 1));
        let raw = host(burn::tensor::activation::softmax(tensor(&gpu.device), 1));
        let raw_error = worst(&raw, &reference) * n as f32;
        let error = worst(&ours, &reference) * n as f32;
        let log_error = log
            .iter()
            .zip(&reference)
            .fold(0f32, |m, (l, p)| m.max((l.exp() - p).abs()))
            * n as f32;
        println!("softmax over {n}: burn {raw_error:e}, ours {error:e}, log {log_error:e} (x n)");
        assert!(error < 1e-4 && log_error < 1e-4, "{n}: {error} {log_error}");
    }
}
