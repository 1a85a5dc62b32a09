//! Prints the torchinfo-style summary of an AlexNet variant and saves its first layer's filters.
//!
//! ```sh
//! cargo xtask example summary_and_filters -- [cifar|alexnet|alexnet-paper] [filters.png]
//! ```

use burn::tensor::Device;
use kindling_model::{AlexNetConfig, GridOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let variant = args.first().map_or("cifar", String::as_str);
    let out = args.get(1).map_or("filters.png", String::as_str);
    let config = match variant {
        "cifar" => AlexNetConfig::cifar(),
        "alexnet" => AlexNetConfig::torchvision(),
        "alexnet-paper" => AlexNetConfig::paper(true),
        other => {
            return Err(format!("unknown variant {other}: cifar, alexnet or alexnet-paper").into());
        }
    };
    let side = config.variant.nominal_input();
    let model = config.init(&Device::flex());

    // Shapes, parameters, MACs and receptive fields, as `cargo xtask summary` prints them.
    println!("{}", model.summary([1, 3, side, side], 2)?);
    // The arrow diagram of the same data.
    println!("{}", model.summary([1, 3, side, side], 2)?.diagram());

    // The first convolution's kernels, each normalised on its own and tiled (Figure 3 of the
    // paper, here for random weights; load trained ones with `load_weights` first).
    model
        .filter_image("features.0", GridOptions::default())?
        .save(out)?;
    println!("wrote {out}");
    Ok(())
}
