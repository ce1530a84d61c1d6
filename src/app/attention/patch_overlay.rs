//! GPU colouring of patch-grid maps (`shaders/patch_overlay.wgsl`): each map is uploaded once as an
//! `R32Float` texture; colormap, value range, opacity and mask cutoff are uniforms, so moving a
//! slider re-runs only the shader. Drawn through an egui paint callback over the image.

use std::collections::HashMap;
use std::sync::Arc;

use eframe::egui;
use eframe::egui_wgpu::{self, CallbackResources, CallbackTrait, RenderState, ScreenDescriptor};
use eframe::wgpu;

use crate::analysis::colormap::Colormap;

const SHADER: &str = include_str!("../../../shaders/patch_overlay.wgsl");
/// Uploaded maps kept on the GPU before the cache is cleared (they re-upload on demand).
const MAX_CACHED_MAPS: usize = 256;

/// One patch-grid map; `id` must change whenever the values do.
#[derive(Clone, Debug)]
pub struct PatchMap {
    pub id: u64,
    pub rows: usize,
    pub cols: usize,
    /// `rows * cols`, row-major.
    pub values: Arc<Vec<f32>>,
}

/// How a map is coloured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OverlayStyle {
    pub colormap: Colormap,
    /// Values map to the colormap as `(v - low) / (high - low)`, clamped.
    pub low: f32,
    pub high: f32,
    pub opacity: f32,
    /// When set, patches below this value stay uncoloured.
    pub cutoff: Option<f32>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    grid: [u32; 2],
    colormap: u32,
    mask_only: u32,
    low: f32,
    high: f32,
    opacity: f32,
    cutoff: f32,
}

impl Params {
    fn new(map: &PatchMap, style: &OverlayStyle) -> Self {
        let colormap = Colormap::ALL
            .iter()
            .position(|c| *c == style.colormap)
            .unwrap_or(0) as u32;
        Params {
            grid: [map.cols as u32, map.rows as u32],
            colormap,
            mask_only: style.cutoff.is_some() as u32,
            low: style.low,
            high: style.high,
            opacity: style.opacity.clamp(0.0, 1.0),
            cutoff: style.cutoff.unwrap_or(f32::NEG_INFINITY),
        }
    }
}

struct UploadedMap {
    uniform: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

/// The pipeline, lookup table and uploaded maps, kept in egui's callback resources.
pub struct OverlayRenderer {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    lut: wgpu::TextureView,
    maps: HashMap<u64, UploadedMap>,
}

impl OverlayRenderer {
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, format: wgpu::TextureFormat) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("patch_overlay"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let layout = bind_group_layout(device);
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("patch_overlay"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("patch_overlay"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format,
                    blend: Some(wgpu::BlendState::PREMULTIPLIED_ALPHA_BLENDING),
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            multiview_mask: None,
            cache: None,
        });
        let lut_rows: Vec<u8> = Colormap::ALL
            .iter()
            .flat_map(|c| c.lut().into_iter().flatten())
            .collect();
        let lut = texture(
            device,
            queue,
            (256, Colormap::ALL.len()),
            wgpu::TextureFormat::Rgba8Unorm,
            &lut_rows,
            4,
        );
        OverlayRenderer {
            pipeline,
            layout,
            lut,
            maps: HashMap::new(),
        }
    }

    /// Uploads `map` if needed and writes this frame's style.
    fn prepare(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        map: &PatchMap,
        style: &OverlayStyle,
    ) {
        if self.maps.len() >= MAX_CACHED_MAPS && !self.maps.contains_key(&map.id) {
            self.maps.clear();
        }
        let (layout, lut) = (&self.layout, &self.lut);
        let uploaded = self.maps.entry(map.id).or_insert_with(|| {
            let bytes: &[u8] = bytemuck::cast_slice(map.values.as_slice());
            let values = texture(
                device,
                queue,
                (map.cols, map.rows),
                wgpu::TextureFormat::R32Float,
                bytes,
                4,
            );
            let uniform = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("patch_overlay params"),
                size: std::mem::size_of::<Params>() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("patch_overlay"),
                layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: uniform.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::TextureView(&values),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: wgpu::BindingResource::TextureView(lut),
                    },
                ],
            });
            UploadedMap {
                uniform,
                bind_group,
            }
        });
        queue.write_buffer(
            &uploaded.uniform,
            0,
            bytemuck::bytes_of(&Params::new(map, style)),
        );
    }

    fn draw(&self, pass: &mut wgpu::RenderPass<'_>, id: u64) {
        if let Some(uploaded) = self.maps.get(&id) {
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &uploaded.bind_group, &[]);
            pass.draw(0..3, 0..1);
        }
    }
}

/// A 2-D texture of `size = (width, height)` texels filled with `data`.
fn texture(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    (width, height): (usize, usize),
    format: wgpu::TextureFormat,
    data: &[u8],
    bytes_per_texel: u32,
) -> wgpu::TextureView {
    let size = wgpu::Extent3d {
        width: width.max(1) as u32,
        height: height.max(1) as u32,
        depth_or_array_layers: 1,
    };
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("patch_overlay"),
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    if data.len() as u64 == (size.width * size.height * bytes_per_texel) as u64 {
        queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            data,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(size.width * bytes_per_texel),
                rows_per_image: Some(size.height),
            },
            size,
        );
    }
    texture.create_view(&wgpu::TextureViewDescriptor::default())
}

/// The uniforms (binding 0), the map (1) and the colormap lookup table (2).
fn bind_group_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    let texture_entry = |binding| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::FRAGMENT,
        ty: wgpu::BindingType::Texture {
            sample_type: wgpu::TextureSampleType::Float { filterable: false },
            view_dimension: wgpu::TextureViewDimension::D2,
            multisampled: false,
        },
        count: None,
    };
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("patch_overlay"),
        entries: &[
            wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            },
            texture_entry(1),
            texture_entry(2),
        ],
    })
}

/// Registers the renderer with eframe's wgpu state (once, at start-up).
pub fn install(render_state: &RenderState) {
    let renderer = OverlayRenderer::new(
        &render_state.device,
        &render_state.queue,
        render_state.target_format,
    );
    render_state
        .renderer
        .write()
        .callback_resources
        .insert(renderer);
}

struct OverlayCallback {
    map: PatchMap,
    style: OverlayStyle,
}

impl CallbackTrait for OverlayCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(renderer) = resources.get_mut::<OverlayRenderer>() {
            renderer.prepare(device, queue, &self.map, &self.style);
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        resources: &CallbackResources,
    ) {
        if let Some(renderer) = resources.get::<OverlayRenderer>() {
            renderer.draw(pass, self.map.id);
        }
    }
}

/// Paints `map` over `rect` with `style` on the GPU.
pub fn paint(painter: &egui::Painter, rect: egui::Rect, map: PatchMap, style: OverlayStyle) {
    painter.add(egui_wgpu::Callback::new_paint_callback(
        rect,
        OverlayCallback { map, style },
    ));
}

/// Renders one map into an `Rgba8Unorm` image of `width x height` over transparent black and reads
/// it back: the same pipeline as on screen, for tests and exports.
pub fn render_offscreen(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    map: &PatchMap,
    style: &OverlayStyle,
    (width, height): (u32, u32),
) -> Option<Vec<u8>> {
    let format = wgpu::TextureFormat::Rgba8Unorm;
    let mut renderer = OverlayRenderer::new(device, queue, format);
    renderer.prepare(device, queue, map, style);
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("patch_overlay target"),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = target.create_view(&wgpu::TextureViewDescriptor::default());
    let padded_row = (width * 4).div_ceil(256) * 256;
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("patch_overlay readback"),
        size: (padded_row * height) as u64,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    {
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("patch_overlay"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::TRANSPARENT),
                    store: wgpu::StoreOp::Store,
                },
            })],
            depth_stencil_attachment: None,
            timestamp_writes: None,
            occlusion_query_set: None,
            multiview_mask: None,
        });
        renderer.draw(&mut pass, map.id);
    }
    encoder.copy_texture_to_buffer(
        wgpu::TexelCopyTextureInfo {
            texture: &target,
            mip_level: 0,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        wgpu::TexelCopyBufferInfo {
            buffer: &readback,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(padded_row),
                rows_per_image: Some(height),
            },
        },
        wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
    );
    queue.submit([encoder.finish()]);
    read_rows(device, &readback, padded_row, width * 4)
}

/// The rows of a mapped-for-reading buffer, each `row_bytes` long of its `padded_row` bytes.
fn read_rows(
    device: &wgpu::Device,
    buffer: &wgpu::Buffer,
    padded_row: u32,
    row_bytes: u32,
) -> Option<Vec<u8>> {
    let slice = buffer.slice(..);
    slice.map_async(wgpu::MapMode::Read, |_| {});
    device.poll(wgpu::PollType::wait_indefinitely()).ok()?;
    let mapped = slice.get_mapped_range().ok()?;
    let pixels = mapped
        .chunks_exact(padded_row as usize)
        .flat_map(|row| row[..row_bytes as usize].iter().copied())
        .collect();
    Some(pixels)
}
