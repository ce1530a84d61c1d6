//! One SD model and one set of settings, ready to give any image's features: the prompt embedded
//! once, the networks read only when an image is not in the feature cache, results cached.

use burn::tensor::{Device, Tensor};
use image::RgbImage;

use super::cache::{FeatureKey, SdFeatureCache};
use super::extract::{NoiseSource, SdFeatureError, SdImageFeatures, SdNetworks, sd_image_features};
use super::settings::SdFeatureSettings;
use crate::analysis::progress::Progress;
use crate::model::sd::{
    PromptCache, PromptError, SdFolder, SdLoadError, TextConditioning, WeightsIdentity,
};

#[derive(Debug, thiserror::Error)]
pub enum SdSessionError {
    #[error(transparent)]
    Load(#[from] SdLoadError),
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error(transparent)]
    Features(#[from] SdFeatureError),
}

/// Where a session keeps what it computes.
#[derive(Debug, Default)]
pub struct SdCaches {
    pub prompts: PromptCache,
    pub features: SdFeatureCache,
}

impl SdCaches {
    pub fn in_memory() -> Self {
        SdCaches::default()
    }

    /// Prompt embeddings in `dir/prompts`, features in `dir/features`.
    pub fn on_disk(dir: &std::path::Path) -> Self {
        SdCaches {
            prompts: PromptCache::on_disk(&dir.join("prompts")),
            features: SdFeatureCache::on_disk(&dir.join("features")),
        }
    }
}

#[derive(Debug)]
pub struct SdSession {
    folder: SdFolder,
    settings: SdFeatureSettings,
    device: Device,
    context: Tensor<3>,
    nets: Option<SdNetworks>,
    features: SdFeatureCache,
    unet_id: WeightsIdentity,
    vae_id: WeightsIdentity,
    text_id: Option<WeightsIdentity>,
}

impl SdSession {
    /// Embeds the settings' prompt (from the prompt cache when there) and checks the weights
    /// files; the networks are read on the first image that is not cached.
    pub fn new(
        folder: SdFolder,
        settings: SdFeatureSettings,
        caches: SdCaches,
        device: &Device,
    ) -> Result<SdSession, SdSessionError> {
        settings.validate().map_err(SdFeatureError::from)?;
        let mut text = TextConditioning::for_folder(&folder, caches.prompts, device)?;
        let context = text.embed(&settings.prompt)?;
        let text_id = folder
            .text_encoder
            .as_ref()
            .map(|c| WeightsIdentity::of(&c.weights))
            .transpose()?;
        Ok(SdSession {
            unet_id: WeightsIdentity::of(&folder.unet.weights)?,
            vae_id: WeightsIdentity::of(&folder.vae.weights)?,
            text_id,
            folder,
            settings,
            device: device.clone(),
            context,
            nets: None,
            features: caches.features,
        })
    }

    pub fn settings(&self) -> &SdFeatureSettings {
        &self.settings
    }

    pub fn folder(&self) -> &SdFolder {
        &self.folder
    }

    /// The last failure to write the feature cache, if any.
    pub fn cache_problem(&self) -> Option<&str> {
        self.features.disk_problem()
    }

    /// Whether `image`'s features are cached (no UNet work needed).
    pub fn is_cached(&mut self, image: &RgbImage) -> bool {
        let key = self.key(image);
        self.features.get(&key).is_some()
    }

    fn key(&self, image: &RgbImage) -> FeatureKey {
        FeatureKey::new(
            image,
            &self.unet_id,
            &self.vae_id,
            self.text_id.as_ref(),
            &self.settings,
        )
    }

    /// `image`'s features with the settings' seeded noise: from the cache, or computed and
    /// cached. A cancelled run caches nothing.
    pub fn features(
        &mut self,
        image: &RgbImage,
        progress: &mut Progress<'_>,
    ) -> Result<SdImageFeatures, SdSessionError> {
        let key = self.key(image);
        if let Some(found) = self.features.get(&key) {
            return Ok(found);
        }
        let computed = self.compute(image, NoiseSource::Seeded, progress)?;
        self.features.put(key, computed.clone());
        Ok(computed)
    }

    /// `image`'s features with the given noise (reproducing a run made elsewhere); not cached.
    pub fn features_with_noise(
        &mut self,
        image: &RgbImage,
        noise: &[f32],
        progress: &mut Progress<'_>,
    ) -> Result<SdImageFeatures, SdSessionError> {
        self.compute(image, NoiseSource::Injected(noise), progress)
    }

    fn compute(
        &mut self,
        image: &RgbImage,
        noise: NoiseSource<'_>,
        progress: &mut Progress<'_>,
    ) -> Result<SdImageFeatures, SdSessionError> {
        let nets = match self.nets.take() {
            Some(nets) => nets,
            None => SdNetworks::load(&self.folder, &self.settings, &self.device)?,
        };
        let result =
            sd_image_features(&nets, image, &self.context, &self.settings, noise, progress);
        self.nets = Some(nets);
        Ok(result?)
    }
}
