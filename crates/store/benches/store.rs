//! Store benchmarks; they print figures and assert nothing. `cargo bench -p store`.
//!
//! - SHA-256 throughput of `hash_file` against coreutils `sha256sum` on a 1 GiB file (warm
//!   page cache for both, best of three), as a ratio; and of `ImageWriter`, which hashes while
//!   it writes.
//! - Promotion of an image set between tiers (hard-linked release tree plus a tier symlink):
//!   a 2 GiB set against a 2 MiB one, median of 15 runs each.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use messages::{Stream, Version};
use store::{ImageWriter, Store, Tier, hash_file, link_tree};

const GIB: usize = 1 << 30;
const MIB: usize = 1 << 20;

/// Incompressible-looking bytes without a random number generator: a 64-bit LCG.
fn fill(buf: &mut [u8], seed: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let bytes = seed.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Writes `size` bytes to `path` through the hashing writer; returns the time it took.
fn write_image(path: &Path, size: usize, seed: u64) -> Duration {
    let mut seed = seed;
    let mut buf = vec![0u8; 8 * MIB];
    let started = Instant::now();
    let mut writer = ImageWriter::create(path).expect("create image");
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len());
        fill(&mut buf[..n], &mut seed);
        writer.write_all(&buf[..n]).expect("write image");
        left -= n;
    }
    writer.finish().expect("finish image");
    started.elapsed()
}

fn best_of(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().unwrap_or_default()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn mib_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / MIB as f64 / time.as_secs_f64()
}

fn checksum(dir: &Path) {
    let path = dir.join("one-gib.img");
    let write = write_image(&path, GIB, 1);
    println!(
        "ImageWriter (write + fsync + SHA-256), 1 GiB: {:.2}s, {:.0} MiB/s",
        write.as_secs_f64(),
        mib_per_s(GIB, write)
    );
    let ours = best_of(3, || {
        let started = Instant::now();
        hash_file(&path).expect("hash");
        started.elapsed()
    });
    let theirs = best_of(3, || {
        let started = Instant::now();
        let status = Command::new("sha256sum")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("sha256sum runs");
        assert!(status.success());
        started.elapsed()
    });
    println!(
        "SHA-256 of 1 GiB, best of 3: store::hash_file {:.3}s ({:.0} MiB/s), sha256sum {:.3}s ({:.0} MiB/s), ratio {:.2}",
        ours.as_secs_f64(),
        mib_per_s(GIB, ours),
        theirs.as_secs_f64(),
        mib_per_s(GIB, theirs),
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}

/// One candidate with two images of `each` bytes under `all/`, then 15 timed promotions.
fn promotion(dir: &Path, label: &str, each: usize) {
    let store = Store::open(dir.join(label)).expect("store");
    let stream: Stream = "f43".parse().unwrap();
    let version: Version = "43.20261127.0".parse().unwrap();
    for (i, arch) in ["x86_64", "aarch64"].iter().enumerate() {
        let arch = arch.parse().unwrap();
        let path = store.image_path(&stream, &version, &arch, &"qcow2".parse().unwrap());
        write_image(&path, each, i as u64 + 7);
    }
    let source = store.version_dir(&stream, &version);
    let times: Vec<Duration> = (0..15)
        .map(|run| {
            let target: Version = format!("43.20261127.{}", run + 1).parse().unwrap();
            let started = Instant::now();
            link_tree(&source, &store.release_dir(&stream, &target)).expect("link");
            store
                .promote(&stream, &target, Tier::PassedHuman)
                .expect("promote");
            store.set_latest_release(&stream, &target).expect("latest");
            started.elapsed()
        })
        .collect();
    println!(
        "promotion of a {label} image set (2 x {} MiB): median {:.3} ms",
        each / MIB,
        median(times).as_secs_f64() * 1000.0
    );
}

fn main() {
    // Under the target directory, not /tmp, which may be a small tmpfs.
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::tempdir_in(base).expect("scratch directory");
    checksum(dir.path());
    promotion(dir.path(), "2 GiB", GIB);
    promotion(dir.path(), "2 MiB", MIB);
}
