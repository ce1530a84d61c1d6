//! The WGSL patch overlay renders exactly the colours of the CPU colormap lookup table.

use std::sync::Arc;

use dinoscope::analysis::colormap::Colormap;
use dinoscope::app::attention::patch_overlay::{OverlayStyle, PatchMap, render_offscreen};
use dinoscope::model::backend::any_gpu_setup;

const CELL: u32 = 10;

fn map() -> PatchMap {
    // 3 rows x 4 cols, values 0..=1 in steps of 1/11.
    PatchMap {
        id: 7,
        rows: 3,
        cols: 4,
        values: Arc::new((0..12).map(|i| i as f32 / 11.0).collect()),
    }
}

fn pixel(pixels: &[u8], row: u32, col: u32) -> [u8; 4] {
    let (x, y) = (col * CELL + CELL / 2, row * CELL + CELL / 2);
    let i = ((y * 4 * CELL + x) * 4) as usize;
    [pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3]]
}

#[test]
fn gpu_colours_equal_the_lookup_table_with_opacity_and_cutoff() {
    // No adapter is a failure, not a pass: this test is the only check of the shader's colours
    // (CI has Mesa's lavapipe, a software Vulkan driver).
    let setup = any_gpu_setup().unwrap_or_else(|| {
        panic!(
            "no wgpu adapter on this machine, so the GPU overlay cannot be tested: install a GPU \
             driver or Mesa's lavapipe (apt-get install mesa-vulkan-drivers)"
        )
    });
    let map = map();
    for colormap in [Colormap::Viridis, Colormap::Inferno, Colormap::Gray] {
        let style = OverlayStyle {
            colormap,
            low: 0.0,
            high: 1.0,
            opacity: 1.0,
            cutoff: None,
        };
        let pixels = render_offscreen(
            &setup.device,
            &setup.queue,
            &map,
            &style,
            (4 * CELL, 3 * CELL),
        )
        .expect("rendered");
        let lut = colormap.lut();
        for (i, value) in map.values.iter().enumerate() {
            let expected = lut[(value * 255.0).round() as usize];
            let got = pixel(&pixels, i as u32 / 4, i as u32 % 4);
            assert_eq!(got, expected, "{colormap:?} patch {i}");
        }
    }

    let style = OverlayStyle {
        colormap: Colormap::Viridis,
        low: 0.0,
        high: 1.0,
        opacity: 0.5,
        cutoff: Some(0.5),
    };
    let pixels = render_offscreen(
        &setup.device,
        &setup.queue,
        &map,
        &style,
        (4 * CELL, 3 * CELL),
    )
    .expect("rendered");
    let lut = Colormap::Viridis.lut();
    for (i, value) in map.values.iter().enumerate() {
        let got = pixel(&pixels, i as u32 / 4, i as u32 % 4);
        if *value < 0.5 {
            assert_eq!(got, [0, 0, 0, 0], "patch {i} is below the cutoff");
        } else {
            let full = lut[(value * 255.0).round() as usize];
            for c in 0..3 {
                let premultiplied = full[c] as f32 * 0.5;
                assert!(
                    (got[c] as f32 - premultiplied).abs() <= 1.0,
                    "patch {i}: {got:?}"
                );
            }
            assert!((got[3] as i32 - 128).abs() <= 1);
        }
    }
}
