//! How the official DINO parameter names (`backbone.blocks.0.attn.qkv.weight`, `head.mlp.2.bias`,
//! `head.last_layer.weight_v`, ...) relate to burn module paths of a [`super::network::DinoNetwork`], and the
//! order in which PyTorch's `named_parameters()` lists them (the order of a `state_dict` and of AdamW's
//! parameter indices).

/// The burn module path of an official parameter name and whether the burn tensor is its transpose
/// (Linear weights: burn `[in, out]`, PyTorch `[out, in]`). `None` for names that are not parameters.
pub fn burn_path(official: &str) -> Option<(String, bool)> {
    if let Some(rest) = official.strip_prefix("head.") {
        let (path, transposed) = head_path(rest)?;
        return Some((format!("head.{path}"), transposed));
    }
    let (path, transposed) = backbone_path(official.strip_prefix("backbone.")?)?;
    Some((format!("backbone.{path}"), transposed))
}

fn linear(layer: &str, param: &str) -> Option<(String, bool)> {
    match param {
        "weight" => Some((format!("{layer}.weight"), true)),
        "bias" => Some((format!("{layer}.bias"), false)),
        _ => None,
    }
}

fn norm(layer: &str, param: &str) -> Option<(String, bool)> {
    match param {
        "weight" => Some((format!("{layer}.gamma"), false)),
        "bias" => Some((format!("{layer}.beta"), false)),
        _ => None,
    }
}

fn backbone_path(name: &str) -> Option<(String, bool)> {
    match name {
        "cls_token" | "pos_embed" | "register_tokens" | "mask_token" => {
            return Some((name.to_string(), false));
        }
        "patch_embed.proj.weight" => return Some(("patch_embed.weight".into(), false)),
        "patch_embed.proj.bias" => return Some(("patch_embed.bias".into(), false)),
        _ => {}
    }
    if let Some(param) = name.strip_prefix("norm.") {
        return norm("norm", param);
    }
    let (index, field) = name.strip_prefix("blocks.")?.split_once('.')?;
    index.parse::<usize>().ok()?;
    let (path, transposed) = match field {
        "ls1.gamma" => ("ls1".to_string(), false),
        "ls2.gamma" => ("ls2".to_string(), false),
        _ => {
            let (layer, param) = field.rsplit_once('.')?;
            match layer {
                "norm1" | "norm2" => norm(layer, param)?,
                "attn.qkv" | "attn.proj" => linear(layer, param)?,
                "mlp.fc1" | "mlp.w12" => linear("mlp.input", param)?,
                "mlp.fc2" | "mlp.w3" => linear("mlp.output", param)?,
                _ => return None,
            }
        }
    };
    Some((format!("blocks.{index}.{path}"), transposed))
}

fn head_path(name: &str) -> Option<(String, bool)> {
    match name {
        "last_layer.weight_v" => return Some(("last_layer_v".into(), false)),
        "last_layer.weight_g" => return Some(("last_layer_g".into(), false)),
        _ => {}
    }
    let (layer, param) = name.rsplit_once('.')?;
    // `nn.Sequential` indices count the GELUs: Linear k is `mlp.{2k}`; a 1-layer head is `mlp` itself.
    let index = match layer {
        "mlp" => 0,
        _ => {
            let k: usize = layer.strip_prefix("mlp.")?.parse().ok()?;
            if !k.is_multiple_of(2) {
                return None;
            }
            k / 2
        }
    };
    linear(&format!("mlp.{index}"), param)
}

/// Sort key giving PyTorch's `named_parameters()` order: a module's own parameters in registration order,
/// then its sub-modules (ViT: `cls_token`, `pos_embed`, `register_tokens`, `mask_token`, `patch_embed`,
/// `blocks`, `norm`; block: `norm1`, `attn`, `ls1`, `norm2`, `mlp`, `ls2`; head: `mlp`, then
/// `last_layer.weight_g` before `weight_v`). Unknown names sort last.
pub fn pytorch_rank(official: &str) -> (u8, usize, u8, u8) {
    const UNKNOWN: (u8, usize, u8, u8) = (u8::MAX, 0, 0, 0);
    let param = |p: &str| u8::from(matches!(p, "bias" | "weight_v"));
    if let Some(rest) = official.strip_prefix("head.") {
        return match rest.split_once('.') {
            Some(("last_layer", p)) => (8, 0, 0, param(p)),
            Some(("mlp", tail)) => match tail.split_once('.') {
                Some((k, p)) => k.parse().map_or(UNKNOWN, |k| (7, k, 0, param(p))),
                None => (7, 0, 0, param(tail)),
            },
            _ => UNKNOWN,
        };
    }
    let Some(rest) = official.strip_prefix("backbone.") else {
        return UNKNOWN;
    };
    const TOP: [&str; 7] = [
        "cls_token",
        "pos_embed",
        "register_tokens",
        "mask_token",
        "patch_embed",
        "blocks",
        "norm",
    ];
    let (first, tail) = rest.split_once('.').unwrap_or((rest, ""));
    let Some(section) = TOP.iter().position(|t| *t == first) else {
        return UNKNOWN;
    };
    if first != "blocks" {
        let last = tail.rsplit('.').next().unwrap_or("");
        return (section as u8, 0, 0, param(last));
    }
    const BLOCK: [&str; 8] = [
        "norm1",
        "attn.qkv",
        "attn.proj",
        "ls1",
        "norm2",
        "mlp.fc1",
        "mlp.fc2",
        "ls2",
    ];
    let Some((index, field)) = tail.split_once('.') else {
        return UNKNOWN;
    };
    let Ok(index) = index.parse::<usize>() else {
        return UNKNOWN;
    };
    let field = field
        .replace("mlp.w12", "mlp.fc1")
        .replace("mlp.w3", "mlp.fc2");
    let Some((layer, p)) = field.rsplit_once('.') else {
        return UNKNOWN;
    };
    match BLOCK.iter().position(|b| *b == layer) {
        Some(sub) => (section as u8, index, sub as u8, param(p)),
        None => UNKNOWN,
    }
}

/// `names` in PyTorch's `named_parameters()` order (stable for equal keys).
pub fn pytorch_order<T>(mut items: Vec<(String, T)>) -> Vec<(String, T)> {
    items.sort_by_key(|(name, _)| pytorch_rank(name));
    items
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::model::config::{Arch, VitConfig};
    use crate::train::adamw::param_paths;
    use crate::train::head::{DinoHead, DinoHeadConfig};
    use crate::train::network::DinoNetwork;

    fn check(vit: VitConfig, head: DinoHeadConfig) {
        let device = Device::flex();
        let network = DinoNetwork {
            backbone: crate::model::vit::Vit::init(vit, &device),
            head: DinoHead::init(&head, &device),
        };
        let official = pytorch_order(network.official_tensors().unwrap());
        let mapped: Vec<String> = official
            .iter()
            .map(|(n, _)| {
                burn_path(n)
                    .unwrap_or_else(|| panic!("{n} has no burn path"))
                    .0
            })
            .collect();
        let mut visited: Vec<String> = param_paths(&network).into_iter().map(|(p, _)| p).collect();
        // burn declares `last_layer_v` before `last_layer_g`; PyTorch registers `weight_g` first.
        let (v, g) = (visited.len() - 2, visited.len() - 1);
        assert_eq!(visited[v], "head.last_layer_v");
        visited.swap(v, g);
        assert_eq!(mapped, visited, "same parameters, PyTorch order");
        for (name, t) in &official {
            let transposed = burn_path(name).is_some_and(|(_, t)| t);
            assert_eq!(
                transposed,
                t.shape.len() == 2 && name.ends_with(".weight"),
                "{name}"
            );
        }
    }

    #[test]
    fn official_names_cover_every_parameter_in_pytorch_order() {
        check(Arch::VitNano.config(), DinoHeadConfig::new(96, 32));
        let mut v2 = VitConfig::dinov2(48, 2, 3, true, 4);
        v2.pos_grid = 4;
        let mut head = DinoHeadConfig::new(48, 20);
        head.nlayers = 1;
        check(v2, head);
    }

    #[test]
    fn names_that_are_not_parameters_have_no_path() {
        assert_eq!(burn_path("backbone.blocks.x.norm1.weight"), None);
        assert_eq!(burn_path("head.mlp.1.weight"), None);
        assert_eq!(burn_path("module.backbone.cls_token"), None);
        assert_eq!(
            burn_path("head.mlp.4.weight"),
            Some(("head.mlp.2.weight".into(), true))
        );
        assert_eq!(pytorch_rank("optimizer"), (u8::MAX, 0, 0, 0));
    }
}
