//! The Help and About windows: what each view shows, for teaching.

use eframe::egui;

pub const SHORTCUTS: &[(&str, &str)] = &[
    ("Ctrl+O", "open images"),
    ("Left / Right", "previous / next image"),
    (
        "1 2 3 4 5 6 7 8 9",
        "Attention / PCA / Co-segmentation / Correspondence / Training / Explorer / Token norms / \
         Side by side / Live tab",
    ),
    ("Up / Down", "next / previous block (layer) of the tab"),
    ("C or Escape", "back to the CLS query"),
    ("Delete", "remove the selected image"),
    ("H or F1", "this help"),
    (
        "F11",
        "presentation mode: full screen, larger, only the view (F11 again to leave)",
    ),
    ("F12", "debug overlay (frame time)"),
];

pub fn help_window(ctx: &egui::Context, open: &mut bool) {
    egui::Window::new("Help")
        .open(open)
        .default_width(520.0)
        .collapsible(false)
        .show(ctx, |ui| {
            egui::ScrollArea::vertical().max_height(520.0).show(ui, |ui| {
                ui.heading("What you are looking at");
                ui.label(
                    "A Vision Transformer cuts the image into square patches (8, 14 or 16 pixels) and turns \
                     each into a token. An extra [CLS] token gathers a summary of the whole image. In every \
                     block, each token attends to all others: attention weights say how much of each other \
                     token it mixes in. The model has several heads per block, each with its own weights.",
                );
                ui.add_space(6.0);
                ui.strong("CLS attention per head");
                ui.label(
                    "Each tile is one head of the selected block: the colour of a patch is how much the \
                     [CLS] token attends to it (min-max scaled per tile). In the last block of a DINO model, \
                     heads light up on the main objects - different heads on different parts - although \
                     the model was never given a label or a mask. 'Head mean' averages the heads.",
                );
                ui.add_space(6.0);
                ui.strong("Thresholded masks (as in the DINO paper)");
                ui.label(
                    "The red outlines enclose the smallest set of patches that together hold the chosen \
                     share of the attention mass (the threshold slider, 0.6 in the paper): sort the \
                     weights, keep the largest until their sum reaches 60%. These masks are what the \
                     paper compares with segmentation ground truth. 'Paper figure' draws the paper's \
                     figure: each chosen head's mask in its own colour over the image.",
                );
                ui.add_space(6.0);
                ui.strong("Query-patch attention");
                ui.label(
                    "Click a patch to see where that patch's token looks instead of [CLS]: patches of the \
                     same object or part usually attend to each other. The clicked patch is framed in \
                     white; 'CLS' (or Escape) goes back.",
                );
                ui.add_space(6.0);
                ui.strong("Layers");
                ui.label(
                    "Early blocks attend locally or by colour and texture; later blocks by meaning. \
                     Move the layer slider (Up / Down) to watch the maps sharpen onto objects.",
                );
                ui.add_space(6.0);
                ui.strong("PCA of the features (tab 2)");
                ui.label(
                    "Each patch token is a vector of a few hundred numbers. PCA finds the three \
                     directions along which these vectors vary most; mapping them to red, green and \
                     blue paints patches with similar features in similar colours. With 'Joint fit' \
                     one PCA covers all images, so the same part (a head, a leg, a wheel) gets the same \
                     colour in every image - the DINOv2 paper's figure. 'Foreground only' thresholds the \
                     first component (which usually separates object from background) and colours only \
                     the object. The percentages are the share of the feature variance each component \
                     explains. A smaller stride overlaps the patches for a finer map. 'Paper figure' \
                     sets the DINOv2 paper's recipe and shows the images over their colourings.",
                );
                ui.add_space(6.0);
                ui.strong("Co-segmentation (tab 3)");
                ui.label(
                    "The patches of all checked images are clustered together (k chosen by the \
                     'elbow' of the clustering cost); each image then votes for the clusters its \
                     salient patches (high [CLS] attention) fall into, and the clusters most images \
                     vote for are the common foreground. 'Common parts' clusters that foreground \
                     again into the chosen number of parts, shared across the images. The legend \
                     names each colour; Run starts it (it takes a while).",
                );
                ui.add_space(6.0);
                ui.strong("Correspondence (tab 4)");
                ui.label(
                    "Click or drag on the source (the selected image): the patch under the point is \
                     compared with every patch of the target(s) by cosine similarity of their \
                     features, coloured over the target, and the best match is circled. 'Auto' finds \
                     best buddies - pairs of patches that are each other's best match - on the salient \
                     parts and draws a diverse few as coloured lines.",
                );
                ui.add_space(6.0);
                ui.strong("Explorer (tab 6)");
                ui.label(
                    "A folder of images in class sub-folders, embedded by the model (CLS token). \
                     Read-out: how well a k-NN vote (DINO's) or a logistic regression recovers the \
                     classes on held-out images; click a confusion-matrix cell to see its images. \
                     Retrieval: the images nearest to a clicked one, and for a result, which \
                     patches of the two images are each other's best match. Embedding map: the set \
                     (or the gallery's patches) laid out in 2-D by PCA or t-SNE.",
                );
                ui.add_space(6.0);
                ui.strong("Token norms (tab 7)");
                ui.label(
                    "The length (L2 norm) of every patch token of a block's output. Large DINOv2 \
                     models without registers grow a few tokens with far larger norms than the rest \
                     in their later blocks, mostly on plain background: the model reuses them as \
                     scratch space for global information (Darcet et al., 'Vision Transformers Need \
                     Registers'). They are outlined in red above the threshold, and stand apart in the \
                     histogram. Models with registers get extra tokens for that job: the outliers \
                     disappear, and the bars and maps below show how much [CLS] and each patch attend \
                     to each register.",
                );
                ui.add_space(6.0);
                ui.strong("Side by side (tab 8)");
                ui.label(
                    "The loaded model and a second checkpoint on the same image: the attention of \
                     [CLS] in each head, or the PCA colours of a block's tokens. A supervised ViT \
                     (DeiT) next to DINO is the DINO paper's point: only the self-supervised model's \
                     heads outline the objects. Block and head move together when both models have \
                     as many; the head strips under each image pick a head.",
                );
                ui.add_space(6.0);
                ui.strong("Live (tab 9)");
                ui.label(
                    "A camera, a video or an animated image, frame by frame: the attention of a head \
                     or the PCA colours, fitted on the first frame and then held so a still scene keeps \
                     its colours. The newest frame always wins: when the model is slower than the \
                     source, frames are skipped, never queued. Click a point to follow it; Record \
                     saves what is shown as a GIF or MP4.",
                );
                ui.add_space(6.0);
                ui.strong("Checkpoints");
                ui.label(
                    "Model > Download official checkpoints fetches the DINO and DINOv2 backbones \
                     (resumable, SHA-256 recorded) into the cache folder and loads them.",
                );
                ui.add_space(6.0);
                ui.strong("Untrained model");
                ui.label(
                    "With random weights (the fallback when no trained model is available) the maps are \
                     close to uniform noise: everything the trained maps show was learned.",
                );
                ui.add_space(8.0);
                ui.heading("Keys");
                egui::Grid::new("help-keys").num_columns(2).show(ui, |ui| {
                    for (key, what) in SHORTCUTS {
                        ui.monospace(*key);
                        ui.label(*what);
                        ui.end_row();
                    }
                });
                ui.add_space(6.0);
                ui.label(
                    "Drop image files or folders on the window to add them. Threshold, opacity and \
                     colormap only re-colour; changing the image, block or query patch recomputes.",
                );
            });
        });
}

pub fn about_window(ctx: &egui::Context, open: &mut bool) {
    egui::Window::new("About dinoscope")
        .open(open)
        .collapsible(false)
        .show(ctx, |ui| {
            ui.label(format!("dinoscope {}", env!("CARGO_PKG_VERSION")));
            ui.label("See what self-supervised Vision Transformers (DINO, DINOv2) see.");
            ui.label("Bundled sample images: see assets/images/LICENSES.md.");
            ui.label("Built with burn (compute) and egui / eframe (interface).");
        });
}
