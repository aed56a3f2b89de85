//! The timing and memory harness of the benchmarks: repeated runs with min and median, peak and
//! current resident memory from `/proc/self/status`, and the one output line per figure
//! (`name: measured … bound … ratio …`). No criterion: `std::time::Instant` is enough for figures
//! measured against bounds of seconds and milliseconds.

use std::time::{Duration, Instant};

/// Min and median of repeated timings.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub min: Duration,
    pub median: Duration,
    pub runs: usize,
}

impl Timing {
    pub fn from_samples(mut samples: Vec<Duration>) -> Self {
        assert!(!samples.is_empty(), "at least one sample");
        samples.sort();
        Self {
            min: samples[0],
            median: samples[samples.len() / 2],
            runs: samples.len(),
        }
    }
}

/// Runs `body` `runs` times (after `warmup` untimed runs) and returns its timing and the last
/// result. `body` gets the run index.
pub fn repeat<T>(warmup: usize, runs: usize, mut body: impl FnMut(usize) -> T) -> (Timing, T) {
    for index in 0..warmup {
        std::hint::black_box(body(index));
    }
    let mut samples = Vec::with_capacity(runs);
    let mut last = None;
    for index in 0..runs {
        let started = Instant::now();
        let value = std::hint::black_box(body(index));
        samples.push(started.elapsed());
        last = Some(value);
    }
    (Timing::from_samples(samples), last.expect("runs >= 1"))
}

/// One figure: `name: measured <v> <unit> bound <b> <unit> ratio <r>` (ratio = measured / bound;
/// 1.00 is the bound met exactly, below 1 is under it).
pub fn figure(name: &str, measured: f64, bound: f64, unit: &str, note: &str) {
    let ratio = if bound > 0.0 {
        measured / bound
    } else {
        f64::NAN
    };
    let note = if note.is_empty() {
        String::new()
    } else {
        format!("  ({note})")
    };
    println!(
        "{name}: measured {} {unit} bound {} {unit} ratio {ratio:.2}{note}",
        number(measured),
        number(bound)
    );
}

/// A figure that has no bound of its own, only a value (kept in the same shape, ratio `-`).
pub fn value(name: &str, measured: f64, unit: &str, note: &str) {
    let note = if note.is_empty() {
        String::new()
    } else {
        format!("  ({note})")
    };
    println!(
        "{name}: measured {} {unit} bound - ratio -{note}",
        number(measured)
    );
}

/// Detail lines (phase times, counts) that explain a figure; prefixed so a reader of the
/// figures can skip them.
pub fn detail(text: impl AsRef<str>) {
    println!("  # {}", text.as_ref());
}

fn number(value: f64) -> String {
    if value == 0.0 || value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else if value.abs() >= 0.1 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

pub fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn status_kb(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// This process's resident memory now, in bytes.
pub fn rss() -> u64 {
    status_kb("self", "VmRSS").unwrap_or(0)
}

/// This process's peak resident memory since start (or since [`reset_peak`]), in bytes.
pub fn peak_rss() -> u64 {
    status_kb("self", "VmHWM").unwrap_or(0)
}

/// Resets the peak (`VmHWM`) to the current resident size (Linux: `5` to `clear_refs`), so a
/// later [`peak_rss`] is the peak of what ran in between. False if the kernel refused.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The machine, for the record: cores, CPU model, memory, rustc, profile.
pub fn describe_machine() {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .map(|rest| rest.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release (bench profile)"
    };
    detail(format!(
        "machine: {cores} cores, {cpu}, {memory} memory, {rustc}, {profile}"
    ));
}

/// How long one `fsync`ed 4 KiB write takes on the filesystem of `dir` (median of 200): the
/// floor of one durable SQLite commit (WAL, synchronous=FULL).
pub fn fsync_latency(dir: &std::path::Path) -> Duration {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("fsync probe file");
    let block = [0u8; 4096];
    let (timing, ()) = repeat(10, 200, |_| {
        file.write_all(&block).expect("write");
        file.sync_data().expect("fsync");
    });
    let _ = std::fs::remove_file(&path);
    timing.median
}
