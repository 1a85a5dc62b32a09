//! The `kindling` command line: parses (see `cli`) and dispatches.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use clap::ValueEnum;
use kindling_trainer::checkpoint::Checkpoint;
use kindling_trainer::cli::{BenchCmd, Cli, Cmd, CompareCmd, ModelSource, TrainArgs};
use kindling_trainer::config::{DatasetKind, ModelName};
use kindling_trainer::device::{parse_devices, smoke_test};
use kindling_trainer::launch::{self, Finished};
use kindling_trainer::train::Interrupted;
use kindling_trainer::{data, eval, inspect, signal};

/// Largest difference from flex accepted as "this device works": f32 conv sums of ~360 terms.
const TOLERANCE: f32 = 1e-3;

/// User errors print their message and causes, never a backtrace (`RUST_BACKTRACE` is for
/// panics); an interrupted run exits with 128 + the signal's number.
fn main() -> ExitCode {
    match run_command(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Interrupted>() => {
            eprintln!("{e}");
            let stopped_by = e
                .downcast_ref::<Interrupted>()
                .and_then(Interrupted::exit_code);
            ExitCode::from(stopped_by.unwrap_or_else(|| signal::stop().exit_code()))
        }
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run_command(command: Cmd) -> Result<()> {
    match command {
        Cmd::Train(args) => train(&args),
        Cmd::Summary {
            model,
            input,
            depth,
            json,
            diagram,
        } => {
            let net = inspect::model(&model, None)?;
            let shape = match input {
                Some(text) => inspect::input_shape(&text)?,
                None => inspect::default_input(&net),
            };
            let summary = net.summary(shape, depth)?;
            if json {
                println!("{}", summary.to_json());
            } else if diagram {
                println!("{}", summary.diagram());
            } else {
                println!("{summary}");
            }
            Ok(())
        }
        Cmd::Filters { source, out } => {
            let net = source_model(&source)?;
            let summary = net.summary(inspect::default_input(&net), 2)?;
            if let Some(first) = summary.layers.iter().find(|l| l.name == "features.0") {
                println!(
                    "{}",
                    inspect::describe_first_layer(first, summary.input_shape)
                );
            }
            save_png(&inspect::filters(&net)?, &out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Cmd::Activations {
            source,
            layer,
            image,
            out,
        } => {
            let net = source_model(&source)?;
            let picture = image::open(&image)
                .with_context(|| format!("cannot read image {}", image.display()))?;
            save_png(&inspect::activations(&net, &layer, &picture)?, &out)?;
            println!(
                "wrote {} ({layer} of the {})",
                out.display(),
                net.variant().title()
            );
            Ok(())
        }
        Cmd::Preview {
            pipeline,
            image,
            out,
            n,
            seed,
        } => {
            let transform = kindling_augment::Transform::from_path(&pipeline)?;
            let picture = image::open(&image)
                .with_context(|| format!("cannot read image {}", image.display()))?
                .to_rgb8();
            save_png(&inspect::preview(&transform, &picture, n, seed)?, &out)?;
            println!("wrote {} (original, then {n} augmented)", out.display());
            Ok(())
        }
        Cmd::Eval { checkpoint, device } => {
            let c = Checkpoint::load(&checkpoint)?;
            let device = one_device(&device)?;
            let config = &c.header.config;
            let model = kindling_trainer::model::from_checkpoint(&c, &device)?;
            let (_, val) = data::splits(config)?;
            let e = eval::evaluate(
                &model,
                &val,
                &config.eval_pipeline(),
                config.data.batch_size,
                config.data.skip_bad_images,
                &device,
            )?;
            println!(
                "{} (epoch {}): {} validation images, loss {:.4}, top-1 {:.1}%, top-5 {:.1}%",
                checkpoint.display(),
                c.header.epoch,
                val.len(),
                e.loss,
                e.top1 * 100.0,
                e.top5 * 100.0
            );
            print!("{}", eval::confusion_table(&val.classes(), &e.confusion));
            for line in &e.skipped {
                println!("skipped: {line}");
            }
            Ok(())
        }
        Cmd::Predict {
            checkpoint,
            top,
            device,
            images,
        } => {
            let c = Checkpoint::load(&checkpoint)?;
            let device = one_device(&device)?;
            let config = &c.header.config;
            let model = kindling_trainer::model::from_checkpoint(&c, &device)?;
            let classes = data::class_names(config)?;
            let pipeline = config.eval_pipeline();
            // Fixed-size datasets' evaluation pipelines take images at the model's size.
            let fit_to = (config.data.dataset != DatasetKind::Folder).then(|| config.input_size());
            for path in &images {
                let image = image::open(path)
                    .with_context(|| format!("cannot read image {}", path.display()))?;
                let ranked = eval::predict(&model, &image, &pipeline, fit_to, top, &device)
                    .with_context(|| format!("predicting {}", path.display()))?;
                let text: Vec<String> = ranked
                    .iter()
                    .map(|&(label, p)| format!("{} {:.1}%", classes[label], p * 100.0))
                    .collect();
                println!("{}: {}", path.display(), text.join(", "));
            }
            Ok(())
        }
        Cmd::Dataset { out, rows, seed } => {
            save_png(&inspect::dataset_grid(seed, rows)?, &out)?;
            println!(
                "wrote {} ({rows} rows of the classes {:?})",
                out.display(),
                data::synthetic::CLASSES
            );
            Ok(())
        }
        Cmd::Compare { what } => compare(what),
        Cmd::Launch(args) => launch(&args),
        Cmd::Bench { what } => bench(what),
        Cmd::CheckDevice { device } => {
            let mut failed = false;
            for (i, dev) in parse_devices(&device)?.iter().enumerate() {
                let report = smoke_test(dev);
                let ok = report.forward_max_abs <= TOLERANCE && report.grad_max_abs <= TOLERANCE;
                failed |= !ok;
                println!(
                    "{device}[{i}] {dev:?}: forward max |diff| {:.2e}, gradient max |diff| {:.2e}, {:.1} ms: {}",
                    report.forward_max_abs,
                    report.grad_max_abs,
                    report.elapsed.as_secs_f64() * 1e3,
                    if ok { "ok" } else { "MISMATCH" }
                );
            }
            if failed {
                bail!("device {device} disagrees with flex beyond {TOLERANCE}");
            }
            Ok(())
        }
    }
}

/// `kindling bench step | augment`: one `RESULT` line per measurement.
fn bench(what: BenchCmd) -> Result<()> {
    use kindling_trainer::bench::{augmentation, training_step};
    match what {
        BenchCmd::Step {
            model,
            batch,
            steps,
            device,
        } => {
            for dev in parse_devices(&device)? {
                for &n in &batch {
                    // torchvision's classifier has 1000 classes, the CIFAR one 10.
                    let classes = if model == ModelName::Cifar { 10 } else { 1000 };
                    let f = training_step(model, classes, n, steps, &dev)?;
                    println!(
                        "RESULT bench=step model={} device={dev:?} batch={n} steps={steps} \
                         forward_backward_images_per_s={:.1} step_images_per_s={:.1}",
                        model
                            .to_possible_value()
                            .map_or("?".into(), |v| v.get_name().to_string()),
                        f.forward_backward,
                        f.with_optimizer
                    );
                }
            }
        }
        BenchCmd::Augment {
            pipeline,
            batch,
            iters,
            device,
        } => {
            for dev in parse_devices(&device)? {
                let rate = augmentation(pipeline, batch, iters, &dev)?;
                println!(
                    "RESULT bench=augment pipeline={pipeline:?} device={dev:?} batch={batch} \
                     iters={iters} images_per_s={rate:.1}"
                );
            }
        }
    }
    Ok(())
}

/// `kindling train`: a new run, or `--resume`.
fn train(args: &TrainArgs) -> Result<()> {
    let stop = signal::stop();
    if let Some(dir) = &args.resume {
        let conflicts = args.resume_conflicts();
        if !conflicts.is_empty() {
            bail!(
                "--resume continues a run as it was configured: {} cannot be given with it",
                conflicts.join(", ")
            );
        }
        let checkpoint = Checkpoint::load(&kindling_trainer::checkpoint::last(dir))?;
        let config = launch::resumed_config(&checkpoint, &args.overrides()?)?;
        if args.dry_run {
            println!("dry run: would resume {}", dir.display());
            println!("{}", serde_json::to_string_pretty(&config)?);
            return Ok(());
        }
        let done = launch::start_resume(dir, checkpoint, &config, args.quiet, &stop.flag)?;
        return report(&done, "resumed and trained to epoch");
    }
    let config = args.resolve()?;
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(());
    }
    if args.download {
        if config.data.dataset != DatasetKind::Cifar10 {
            bail!("--download fetches CIFAR-10; add --dataset cifar10");
        }
        let dir = config.data_dir().context("CIFAR-10 has a default folder")?;
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let folder = data::cifar::download(
            data::cifar::URL,
            &dir,
            data::cifar::MD5,
            progress && !args.quiet,
        )?;
        if !args.quiet {
            println!("CIFAR-10 in {}", folder.display());
        }
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/{}", unix_time())));
    let done = launch::start_new(&config, &out, args.quiet, &stop.flag)?;
    report(&done, "trained to epoch")
}

/// `kindling compare augment | parallel`.
fn compare(what: CompareCmd) -> Result<()> {
    use kindling_trainer::compare::{self, augment};
    use kindling_trainer::config::Engine;
    let stop = signal::stop();
    let default_out = || PathBuf::from(format!("compare/{}", unix_time()));
    match what {
        CompareCmd::Augment(args) => {
            let plan = compare::augment_plan(&args)?;
            let out = args.base.out.clone().unwrap_or_else(default_out);
            if args.base.dry_run {
                augment::preflight(&plan)?;
                for arm in &plan.arms {
                    for i in 0..plan.seeds {
                        let seed = plan.base.seed + i as u64;
                        augment::arm_config(&plan, arm, seed)?.validate()?;
                        println!("would train {}/runs/{}/seed{seed}", out.display(), arm.name);
                    }
                }
                return Ok(());
            }
            let table = compare::compare_augment(&plan, &out, args.base.quiet, &stop.flag)
                .inspect_err(|e| stopped_hint(e, &out))?;
            println!("{table}");
            println!(
                "comparison in {} (summary.md, summary.csv, runs.csv, curves.csv, val_accuracy.png)",
                out.display()
            );
            Ok(())
        }
        CompareCmd::Parallel(args) => {
            let base = args.base.config()?;
            let engines = if args.engines.is_empty() {
                let mut e = vec![Engine::Tcp];
                if cfg!(feature = "mpi") && kindling_trainer::spawn::mpirun_available() {
                    e.push(Engine::Mpi);
                }
                e
            } else {
                args.engines.clone()
            };
            let out = args.base.out.clone().unwrap_or_else(default_out);
            if args.base.dry_run {
                for shape in compare::parallel_shapes(&engines)? {
                    compare::parallel::shape_config(&base, shape, args.ranks)?.validate()?;
                    println!("would train {}", shape.name(args.ranks));
                }
                return Ok(());
            }
            let table = compare::compare_parallel(&base, args.ranks, &engines, &out, &stop.flag)
                .inspect_err(|e| stopped_hint(e, &out))?;
            println!("{table}");
            println!("comparison in {}", out.display());
            Ok(())
        }
    }
}

/// `kindling launch ... -- train ARGS`: this machine's ranks, torchrun-style.
fn launch(args: &kindling_trainer::cli::LaunchArgs) -> Result<()> {
    use kindling_trainer::config::Engine;
    use kindling_trainer::spawn::{self, Group, Output};
    let mut command = args.command.clone();
    if command.first().and_then(|c| c.to_str()) != Some("train") {
        bail!("kindling launch runs `-- train ARGS` on every rank");
    }
    if args.engine == Engine::Threads {
        bail!("--engine threads runs in one process: use kindling train --nproc-per-node N");
    }
    if !command.iter().any(|a| a == "--engine") {
        let engine = serde_json::to_value(args.engine)?;
        command.push("--engine".into());
        command.push(engine.as_str().unwrap_or("tcp").into());
    }
    let group = Group {
        nproc_per_node: args.nproc_per_node,
        nnodes: args.nnodes,
        node_rank: args.node_rank,
        master_addr: args.master_addr.clone(),
        master_port: args.master_port,
        bind: args.bind.clone(),
    };
    let stop = signal::stop();
    spawn::run_ranks(
        args.engine,
        &group,
        &command,
        &Output::Inherit,
        Some(&stop.flag),
    )
}

/// A stopped comparison continues when the same command runs again.
fn stopped_hint(e: &anyhow::Error, out: &Path) {
    if e.is::<Interrupted>() {
        eprintln!(
            "comparison in {} stopped; the finished runs are kept: run the same command again \
             to continue",
            out.display()
        );
    }
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Prints the last line of a run: how far it got, in what time, its validation accuracy and
/// where it is (rank 0 only).
fn report(done: &Finished, headline: &str) -> Result<()> {
    let Some(run) = &done.run else {
        return Ok(());
    };
    let last = run.history().last().context("no epoch ran")?;
    let ranks = match done.ranks {
        1 => String::new(),
        n => format!(" on {n} ranks ({:?})", done.engine).to_lowercase(),
    };
    println!(
        "{headline} {}{ranks} in {:.0}s: validation accuracy {:.1}%, run in {}",
        last.epoch,
        done.elapsed.as_secs_f64(),
        last.val_acc * 100.0,
        run.path().display()
    );
    Ok(())
}

/// The one device of `spec`.
fn one_device(spec: &str) -> Result<burn::tensor::Device> {
    match parse_devices(spec)?.as_slice() {
        [device] => Ok(device.clone()),
        many => bail!(
            "--device {spec} names {} devices; eval and predict run on one",
            many.len()
        ),
    }
}

/// The model of `filters` / `activations`: a checkpoint's, or a variant with optional weights.
fn source_model(source: &ModelSource) -> Result<kindling_model::AlexNet> {
    match &source.checkpoint {
        Some(path) => {
            let c = Checkpoint::load(path)?;
            kindling_trainer::model::from_checkpoint(&c, &burn::tensor::Device::flex())
        }
        None => inspect::model(&source.model, source.weights.as_deref()),
    }
}

fn save_png(picture: &image::RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    picture.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    kindling_trainer::run::write_atomic(path, &bytes)
}
