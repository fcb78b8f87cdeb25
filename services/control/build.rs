//! Makes sure `dashboard/dist` exists before `rust-embed` looks at it, and rebuilds this crate
//! when the dashboard is rebuilt.
//!
//! rust-embed resolves the folder once at compile time: a missing folder would leave a debug
//! binary unable to read the dashboard built later (its path check compares against a path
//! that could not be canonicalised), so an empty folder is made instead; `/` then shows the
//! "not built" page until `npm run build` fills it. A release build embeds the files, so there
//! the folder is watched (Vite's build replaces its entries, which re-runs this and re-embeds);
//! a debug build reads the folder at run time and is not rebuilt for a new dashboard.

fn main() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboard/dist");
    if let Err(error) = std::fs::create_dir_all(&dist) {
        println!(
            "cargo::warning=could not create {}: {error}",
            dist.display()
        );
    }
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo::rerun-if-changed={}", dist.display());
    }
    println!("cargo::rerun-if-changed=build.rs");
}
