//! CIFAR-10 download against a local HTTP server serving a small tarball this test builds.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use kindling_trainer::data::cifar::{self, Cifar10};
use kindling_trainer::data::idx::Split;
use md5::{Digest, Md5};

/// A CIFAR-10-format tarball: 4 records per training file, 6 in the test file; record `k` of
/// a file has label `k % 10` and pixels `(k * 7 + i) % 256`.
fn tarball() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let files: Vec<(String, usize)> = (1..=5)
        .map(|i| (format!("data_batch_{i}.bin"), 4))
        .chain([("test_batch.bin".to_string(), 6)])
        .collect();
    for (name, records) in files {
        let mut data = Vec::new();
        for k in 0..records {
            data.push((k % 10) as u8);
            data.extend((0..3072).map(|i| ((k * 7 + i) % 256) as u8));
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(
            &mut header,
            format!("cifar-10-batches-bin/{name}"),
            data.as_slice(),
        )
        .expect("tar entry");
    }
    tar.into_inner().expect("tar").finish().expect("gzip")
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Serves one request: `status`, a Content-Length of `body.len()`, and the first `send` bytes.
fn serve_once(status: &'static str, body: Vec<u8>, send: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/cifar-10-binary.tar.gz",
        listener.local_addr().expect("addr")
    );
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            request.push(byte[0]);
        }
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body[..send.min(body.len())]);
    });
    url
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cifar10_download_checks_and_unpacks_atomically() {
    let root = std::env::temp_dir().join(format!("kindling-cifar-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let body = tarball();
    let md5 = md5_hex(&body);

    // A wrong checksum: an error, and nothing left behind.
    let dir = root.join("bad-md5");
    let url = serve_once("200 OK", body.clone(), body.len());
    let e = format!(
        "{:#}",
        cifar::download(&url, &dir, &"0".repeat(32), false).expect_err("md5")
    );
    assert!(e.contains("MD5"), "{e}");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));

    // The connection drops halfway: an error naming the shortfall, nothing left behind.
    let dir = root.join("truncated");
    let url = serve_once("200 OK", body.clone(), body.len() / 2);
    let e = format!(
        "{:#}",
        cifar::download(&url, &dir, &md5, false).expect_err("truncated")
    );
    assert!(e.contains("bytes"), "{e}");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));

    // 404.
    let dir = root.join("missing");
    let url = serve_once("404 Not Found", b"no".to_vec(), 2);
    assert!(cifar::download(&url, &dir, &md5, false).is_err());
    assert!(leftovers(&dir).is_empty());

    // The real thing: unpacked, readable, and a second call does not download again.
    let dir = root.join("good");
    let url = serve_once("200 OK", body.clone(), body.len());
    let folder = cifar::download(&url, &dir, &md5, false).expect("downloads");
    assert_eq!(leftovers(&dir), vec![cifar::FOLDER.to_string()]);
    assert!(folder.join("data_batch_5.bin").is_file());
    let again = cifar::download("http://127.0.0.1:9/unreachable", &dir, &md5, false)
        .expect("already there: no download");
    assert_eq!(again, folder);

    let train = Cifar10::load(&dir, Split::Train, None).expect("train split");
    let test = Cifar10::load(&dir, Split::Test, Some(5)).expect("test split");
    assert_eq!((train.len(), test.len()), (20, 5));
    let (img, label) = train.get(6); // record 2 of data_batch_2
    assert_eq!((img.shape(), label), ([3, 32, 32], 2));
    assert_eq!(img.get(0, 0, 1), 15, "(2 * 7 + 1) % 256");

    // A truncated data file names the file and the record.
    let file = folder.join("test_batch.bin");
    let bytes = std::fs::read(&file).expect("read");
    std::fs::write(&file, &bytes[..3073 * 2 + 100]).expect("truncate");
    let e = format!(
        "{:#}",
        Cifar10::load(&dir, Split::Test, None).expect_err("truncated")
    );
    assert!(
        e.contains("test_batch.bin") && e.contains("record 2"),
        "{e}"
    );
    std::fs::remove_dir_all(&root).expect("cleanup");
}

/// An image folder of three colour classes: images of several sizes and modes (RGB, gray,
/// RGBA; PNG and JPEG), each a colour plus noise, so a short run can learn them.
pub fn colour_folder(root: &Path, per_class: usize) {
    let classes: [(&str, [u8; 3]); 3] = [
        ("blue", [20, 40, 220]),
        ("green", [30, 200, 40]),
        ("red", [210, 30, 30]),
    ];
    for (c, (name, rgb)) in classes.iter().enumerate() {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("class folder");
        for i in 0..per_class {
            let (w, h) = (24 + (i % 3) * 20, 30 + (i % 2) * 10);
            let img = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let n = ((x * 31 + y * 17 + i as u32 * 7 + c as u32) % 41) as i32 - 20;
                image::Rgb(rgb.map(|v| (i32::from(v) + n).clamp(0, 255) as u8))
            });
            let dynamic = image::DynamicImage::ImageRgb8(img);
            match i % 4 {
                0 => dynamic.save(dir.join(format!("{i}.png"))),
                1 => dynamic.save(dir.join(format!("{i}.JPG"))),
                2 => dynamic.to_rgba8().save(dir.join(format!("{i}.png"))),
                _ => dynamic.save(dir.join(format!("{i}.jpeg"))),
            }
            .expect("image written");
        }
    }
}

#[test]
fn image_folder_reads_classes_sizes_and_modes() {
    use kindling_trainer::data::folder::ImageFolder;
    let root = std::env::temp_dir().join(format!("kindling-folder-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    colour_folder(&root, 4);
    std::fs::write(root.join("notes.txt"), "not a class").expect("stray file");
    let folder = ImageFolder::scan(&root).expect("scans");
    assert_eq!(folder.classes(), ["blue", "green", "red"]);
    assert_eq!(folder.len(), 12);
    for i in 0..folder.len() {
        let (img, label) = folder.get(i).expect("decodes");
        // At its own size: the run's pipelines resize.
        let k = i % 4;
        assert_eq!(
            (img.channels(), img.height(), img.width()),
            (3, 30 + (k % 2) * 10, 24 + (k % 3) * 20)
        );
        assert_eq!(label, i / 4);
    }
    // A red image stays red after decoding.
    let (img, _) = folder.get(8).expect("red");
    let mean = |c: usize| {
        let plane = img.plane(c);
        plane.iter().map(|&v| f64::from(v)).sum::<f64>() / plane.len() as f64
    };
    assert!(mean(0) > 180.0 && mean(1) < 60.0 && mean(2) < 60.0);

    // A corrupt file is an error naming it; an empty class folder too.
    std::fs::write(root.join("red/broken.png"), b"not a png").expect("corrupt file");
    let folder = ImageFolder::scan(&root).expect("scans");
    let broken = (0..folder.len())
        .find_map(|i| folder.get(i).err())
        .expect("the corrupt file fails");
    assert!(format!("{broken:#}").contains("broken.png"), "{broken:#}");
    std::fs::create_dir_all(root.join("yellow")).expect("empty class");
    let err = ImageFolder::scan(&root).expect_err("empty class folder");
    assert!(err.to_string().contains("yellow has no images"), "{err}");
    let err = ImageFolder::scan(&root.join("missing")).expect_err("missing folder");
    assert!(
        err.to_string().contains("cannot read the image folder"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).expect("cleanup");
}

#[test]
fn training_on_an_image_folder_learns_its_classes() {
    use kindling_trainer::config::{DatasetKind, TrainConfig};
    use kindling_trainer::run::RunDir;
    let _rng = crate::rng_lock();
    let root = std::env::temp_dir().join(format!("kindling-folder-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    colour_folder(&root.join("train"), 24);
    colour_folder(&root.join("val"), 6);
    let config = {
        let mut c = TrainConfig::default();
        c.data.dataset = DatasetKind::Folder;
        c.data.data_dir = Some(root.join(""));
        c.epochs = 3;
        c.schedule.warmup_epochs = 0;
        c.data.batch_size = 8;
        c.data.train_size = Some(1000);
        c.data.val_size = Some(1000);
        c
    };
    let run_dir = root.join("run");
    let mut run = RunDir::create(&run_dir, &config).expect("run");
    kindling_trainer::launch::train(&config, &mut run, true).expect("trains");
    let last = run.history().last().expect("epochs").clone();
    eprintln!(
        "image folder: validation accuracy {:.1}%",
        last.val_acc * 100.0
    );
    assert!(last.val_acc >= 0.9, "{last:?}");
    let confusion = std::fs::read_to_string(run_dir.join("confusion.csv")).expect("confusion");
    assert!(
        confusion.contains("blue") && confusion.contains("red"),
        "{confusion}"
    );
    assert_eq!(
        kindling_trainer::data::class_names(&config).expect("classes"),
        ["blue", "green", "red"]
    );
    std::fs::remove_dir_all(&root).expect("cleanup");
}

#[test]
fn an_image_folder_without_train_and_val_is_split_by_the_seed() {
    use kindling_trainer::config::{DatasetKind, TrainConfig};
    let root = std::env::temp_dir().join(format!("kindling-folder-split-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    colour_folder(&root, 5);
    let config = {
        let mut c = TrainConfig::default();
        c.data.dataset = DatasetKind::Folder;
        c.data.data_dir = Some(root.clone());
        c.data.batch_size = 4;
        c.data.train_size = Some(100);
        c.data.val_size = Some(6);
        c
    };
    let (train, val) = kindling_trainer::data::splits(&config).expect("splits");
    assert_eq!((train.len(), val.len()), (9, 6));
    let (again, _) = kindling_trainer::data::splits(&config).expect("splits");
    let labels = |d: &kindling_trainer::data::Dataset| -> Vec<usize> {
        (0..d.len()).map(|i| d.get(i).expect("decodes").1).collect()
    };
    assert_eq!(
        labels(&train),
        labels(&again),
        "the split depends only on the seed"
    );
    let too_many = {
        let mut c = config;
        c.data.val_size = Some(15);
        c
    };
    let err = kindling_trainer::data::splits(&too_many).expect_err("nothing left");
    assert!(
        err.to_string()
            .contains("15 images, not more than the 15 held out for validation"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).expect("cleanup");
}
