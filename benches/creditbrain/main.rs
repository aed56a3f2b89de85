//! CreditBrain's benchmarks (`cargo bench --bench creditbrain -- [name …]`, or `scripts/bench`):
//! each figure printed as `name: measured … bound … ratio …`, measured against the bound the
//! integrations impose. Names: `allocation`, `snapshot`, `provisioning` (with the usage poll),
//! `full_run` (with Bags requests per run), `startup`; none = all, in that order. Knobs are
//! environment variables (`BENCH_*`, see BENCHMARKS.md).

mod allocation;
mod daemon;
mod full_run;
mod harness;
mod provisioning;
mod snapshot;
mod startup;

const ALL: [&str; 5] = [
    "allocation",
    "snapshot",
    "provisioning",
    "full_run",
    "startup",
];

/// An environment knob, or its default.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; anything else starting with `-` is a libtest flag too.
    let mut names: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    if names.is_empty() {
        names = ALL.iter().map(|name| name.to_string()).collect();
    }
    for name in &names {
        assert!(
            ALL.contains(&name.as_str()),
            "unknown bench {name:?}; expected one of {ALL:?}"
        );
    }
    harness::describe_machine();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for name in &names {
        println!("## {name}");
        match name.as_str() {
            "allocation" => allocation::run(),
            "snapshot" => runtime.block_on(snapshot::run()),
            "provisioning" => runtime.block_on(provisioning::run()),
            "full_run" => runtime.block_on(full_run::run()),
            "startup" => runtime.block_on(startup::run()),
            _ => unreachable!(),
        }
    }
}
