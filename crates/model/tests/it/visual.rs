//! Filter and activation pictures.

use kindling_model::{AlexNetConfig, GridOptions, ModelError};

use crate::common::{Reference, flex};

#[test]
fn first_layer_filters_and_activation_maps_tile_into_images() {
    let reference = Reference::load();
    let device = flex();
    let model = AlexNetConfig::cifar()
        .init(&device)
        .load_weights(reference.path("cifar_weights_pth"))
        .expect("weights");

    let options = GridOptions::default();
    let filters = model
        .filter_image("features.0", options)
        .expect("64 RGB filters");
    // 8x8 tiles of 3x3 pixels scaled by 4, one pixel apart.
    assert_eq!(filters.dimensions(), (8 * 13 + 1, 8 * 13 + 1));
    let first_tile: Vec<[u8; 3]> = (1..13)
        .flat_map(|y| (1..13).map(move |x| (x, y)))
        .map(|(x, y)| filters.get_pixel(x, y).0)
        .collect();
    // Each filter is stretched to the full range on its own.
    assert!(
        first_tile.iter().any(|p| p.contains(&0)) && first_tile.iter().any(|p| p.contains(&255))
    );

    let stats = model.filter_stats(0).expect("stats");
    assert_eq!(stats.len(), 64);
    assert!(stats.iter().all(|s| s.norm > 0.0 && s.colourfulness >= 0.0));

    let err = model
        .filter_image("features.3", options)
        .expect_err("64-channel filters");
    assert_eq!(
        err,
        ModelError::NotRgbFilters {
            layer: "features.3".into(),
            channels: 64
        }
    );
    let err = model.filter_image("features.1", options).expect_err("ReLU");
    assert!(matches!(err, ModelError::NotAConvolution { .. }), "{err}");

    let x = reference.tensor4("cifar_input", &device);
    let maps = model
        .activation_image(
            x.clone(),
            "features.3",
            1,
            GridOptions {
                columns: Some(16),
                scale: 1,
                gap: 2,
            },
        )
        .expect("192 maps of 16x16");
    assert_eq!(maps.dimensions(), (16 * 18 + 2, 12 * 18 + 2));
    let err = model
        .activation_image(x.clone(), "classifier.1", 0, options)
        .expect_err("flat");
    assert!(matches!(err, ModelError::NotSpatial { .. }), "{err}");
    let err = model
        .activation_image(x, "features.0", 8, options)
        .expect_err("batch of 8");
    assert_eq!(err, ModelError::SampleOutOfRange { index: 8, batch: 8 });
}
