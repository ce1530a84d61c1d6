// Colours a patch-grid map (one f32 per patch) through a colormap lookup table and blends it over
// whatever is below (the image), entirely on the GPU: the map is uploaded once; colormap, range,
// opacity and the mask cutoff are uniforms, so moving a slider re-runs only this shader.

struct Params {
    // Grid size in patches (cols, rows).
    grid: vec2<u32>,
    // Row of the lookup table (one colormap per row).
    colormap: u32,
    // 1: patches below `cutoff` are left uncoloured (thresholded-mask view).
    mask_only: u32,
    // Values are scaled by (v - low) / (high - low) before the lookup.
    low: f32,
    high: f32,
    opacity: f32,
    cutoff: f32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var values: texture_2d<f32>;
@group(0) @binding(2) var lut: texture_2d<f32>;

struct VertexOut {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

// One triangle covering the viewport (egui sets the viewport to the widget's rectangle).
@vertex
fn vs_main(@builtin(vertex_index) index: u32) -> VertexOut {
    let corner = vec2<f32>(f32((index << 1u) & 2u), f32(index & 2u));
    var out: VertexOut;
    out.position = vec4<f32>(corner.x * 2.0 - 1.0, 1.0 - corner.y * 2.0, 0.0, 1.0);
    out.uv = corner;
    return out;
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    let cell = min(vec2<u32>(in.uv * vec2<f32>(params.grid)), params.grid - vec2<u32>(1u, 1u));
    let value = textureLoad(values, vec2<i32>(cell), 0).r;
    if (params.mask_only == 1u && value < params.cutoff) {
        discard;
    }
    let span = max(params.high - params.low, 1e-30);
    let t = clamp((value - params.low) / span, 0.0, 1.0);
    let color = textureLoad(lut, vec2<i32>(i32(round(t * 255.0)), i32(params.colormap)), 0);
    // Premultiplied alpha, as egui's render pass blends.
    return vec4<f32>(color.rgb * params.opacity, params.opacity);
}
