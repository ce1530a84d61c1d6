//! Parity of the token norms and register attention with the PyTorch reference
//! (fixture: tools/make_norm_fixtures.py).

mod common;

use burn::tensor::Device;
use common::{fixture, read_expected};
use dinoscope::analysis::token_norms::{
    TokenNormError, all_token_norms, block_tokens, register_attention, token_norms,
};
use dinoscope::model::{LoadOptions, PreparedImage, Vit, load_model};

const TOLERANCE: f32 = 1e-4;

fn max_diff(actual: &[f32], expected: &[f32], what: &str) -> f32 {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    actual
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn model(name: &str) -> Vit {
    let options = LoadOptions {
        config: None,
        heads: Some(2),
        ..LoadOptions::default()
    };
    load_model(&fixture(name), &options, &Device::flex())
        .expect("fixture model")
        .vit
}

/// The fixture's normalised input as a prepared image (the RGB copy is unused by the analyses).
fn prepared(input: &(Vec<usize>, Vec<f32>)) -> PreparedImage {
    let (h, w) = (input.0[2] as u32, input.0[3] as u32);
    PreparedImage {
        rgb: image::RgbImage::new(w, h),
        normalized: input.1.clone(),
        note: None,
        original_size: (w, h),
        resized_size: (w, h),
    }
}

/// Block `block`'s row of a `[blocks, T]` norms fixture.
fn row(norms: &(Vec<usize>, Vec<f32>), block: usize) -> &[f32] {
    let t = norms.0[1];
    &norms.1[block * t..(block + 1) * t]
}

#[test]
fn token_norms_of_every_block_match_the_reference() {
    let expected = read_expected("token_norms.safetensors");
    for (checkpoint, case, prefix, (rows, cols)) in [
        ("v2_reg4_teacher_checkpoint.pth", "reg4", 5, (3, 5)),
        ("v2_p14.pth", "p14", 1, (4, 3)),
    ] {
        let vit = model(checkpoint);
        let image = prepared(&expected[&format!("{case}_input")]);
        let want = &expected[&format!("{case}_norms")];
        let all = all_token_norms(&vit, &image).unwrap();
        assert_eq!(all.len(), vit.config().depth);
        let mut worst = 0f32;
        for (block, norms) in all.iter().enumerate() {
            assert_eq!(norms.block, block);
            assert_eq!((norms.grid.rows, norms.grid.cols), (rows, cols));
            assert_eq!(norms.prefix.len(), prefix);
            let joined: Vec<f32> = norms.prefix.iter().chain(&norms.patches).copied().collect();
            worst = worst.max(max_diff(&joined, row(want, block), case));
            // One block alone gives the same norms as the pass over all blocks.
            let single = token_norms(&vit, &image, block).unwrap();
            worst = worst.max(max_diff(&single.patches, &norms.patches, case));
            worst = worst.max(max_diff(&single.prefix, &norms.prefix, case));
        }
        assert!(worst <= TOLERANCE, "{case} norms: {worst}");
        eprintln!("max abs error: {case} token norms {worst:e}");
    }
}

#[test]
fn register_attention_of_every_block_matches_the_reference() {
    let expected = read_expected("token_norms.safetensors");
    let vit = model("v2_reg4_teacher_checkpoint.pth");
    let image = prepared(&expected["reg4_input"]);
    let (shape, want) = &expected["reg4_register_attn"];
    let per_block = shape[1..].iter().product::<usize>();
    let mut worst = 0f32;
    for block in 0..vit.config().depth {
        let attn = register_attention(&vit, &image, block).unwrap();
        assert_eq!((attn.heads, attn.registers, attn.queries()), (2, 4, 16));
        let want = &want[block * per_block..(block + 1) * per_block];
        worst = worst.max(max_diff(&attn.values, want, "register attention"));
        // The mean over heads is the mean of the reference's heads.
        let half = per_block / 2;
        let mean: Vec<f32> = (0..half)
            .map(|i| (want[i] + want[half + i]) / 2.0)
            .collect();
        worst = worst.max(max_diff(&attn.head_mean(), &mean, "head mean"));
        let both = block_tokens(&vit, &image, block).unwrap();
        assert_eq!(both.registers.as_ref(), Some(&attn));
    }
    assert!(worst <= TOLERANCE, "register attention: {worst}");
    eprintln!("max abs error: register attention {worst:e}");
}

#[test]
fn a_model_without_registers_has_no_register_attention() {
    let expected = read_expected("token_norms.safetensors");
    let vit = model("v2_p14.pth");
    let image = prepared(&expected["p14_input"]);
    assert_eq!(
        register_attention(&vit, &image, 0),
        Err(TokenNormError::NoRegisters)
    );
    assert_eq!(block_tokens(&vit, &image, 2).unwrap().registers, None);
    assert_eq!(
        token_norms(&vit, &image, 3),
        Err(TokenNormError::BlockOutOfRange { block: 3, depth: 3 })
    );
}
