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
