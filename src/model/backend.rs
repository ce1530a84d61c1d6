//! Choosing where the model runs: burn's wgpu backend on a GPU, or burn's Flex CPU backend.

use std::sync::OnceLock;

use burn::tensor::Device;
use burn::tensor::wgpu::{WgpuSetup, wgpu};

/// `--device` choice.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum DeviceChoice {
    /// A hardware GPU when one is found, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// The wgpu backend on whatever adapter there is (a software one included).
    Gpu,
}

/// The device tensors are created on, with a description for the user.
#[derive(Clone, Debug)]
pub struct ComputeDevice {
    pub device: Device,
    pub description: String,
    pub is_gpu: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("no usable GPU: {0}")]
pub struct NoGpu(String);

/// The one wgpu runtime of the process (burn registers a runtime once), with its handles.
struct GpuRuntime {
    device: Device,
    setup: WgpuSetup,
}

fn gpu_runtime() -> Result<&'static GpuRuntime, NoGpu> {
    static RUNTIME: OnceLock<Result<GpuRuntime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            // A driver that panics while probed leaves the CPU backend, with the reason shown.
            crate::panics::guarded("the GPU probe", || {
                let (device, setup) = Device::wgpu_options()
                    .init_with_setup()
                    .map_err(|e| e.to_string())?;
                Ok(GpuRuntime { device, setup })
            })
        })
        .as_ref()
        .map_err(|e| NoGpu(e.clone()))
}

/// The CPU device (Flex: SIMD kernels, multi-threaded with rayon's global pool, whose size
/// `RAYON_NUM_THREADS` sets).
pub fn cpu() -> ComputeDevice {
    ComputeDevice {
        device: Device::flex(),
        description: match rayon::current_num_threads() {
            1 => "CPU (burn Flex, 1 thread)".to_string(),
            n => format!("CPU (burn Flex, {n} threads)"),
        },
        is_gpu: false,
    }
}

/// The wgpu device, whatever its adapter (a software rasteriser such as lavapipe included).
pub fn gpu() -> Result<ComputeDevice, NoGpu> {
    let runtime = gpu_runtime()?;
    let info = runtime.setup.adapter.get_info();
    let software = info.device_type == wgpu::DeviceType::Cpu;
    Ok(ComputeDevice {
        device: runtime.device.clone(),
        description: format!(
            "GPU: {} ({:?}, burn wgpu{})",
            info.name,
            info.backend,
            if software {
                ", software rasteriser"
            } else {
                ""
            }
        ),
        is_gpu: !software,
    })
}

/// A hardware GPU; software rasterisers (llvmpipe / lavapipe) are slower than the CPU backend.
fn hardware_gpu() -> Result<ComputeDevice, NoGpu> {
    let device = crate::panics::guarded("reading the GPU adapter", || gpu().map_err(|e| e.0))
        .map_err(NoGpu)?;
    if device.is_gpu {
        Ok(device)
    } else {
        Err(NoGpu(format!(
            "only a software adapter was found ({})",
            device.description
        )))
    }
}

/// The wgpu handles burn uses, for sharing a hardware GPU with the renderer.
pub fn shared_gpu_setup() -> Option<&'static WgpuSetup> {
    hardware_gpu().ok()?;
    gpu_runtime().ok().map(|r| &r.setup)
}

/// The wgpu handles of any adapter (a software rasteriser included), for GPU rendering tests.
pub fn any_gpu_setup() -> Option<&'static WgpuSetup> {
    gpu_runtime().ok().map(|r| &r.setup)
}

/// Resolves a `--device` choice; `auto` falls back to the CPU and says why.
pub fn select(choice: DeviceChoice) -> Result<ComputeDevice, NoGpu> {
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Gpu => gpu(),
        DeviceChoice::Auto => Ok(hardware_gpu().unwrap_or_else(|why| {
            let mut device = cpu();
            device.description.push_str(&format!(" - {why}"));
            device
        })),
    }
}
