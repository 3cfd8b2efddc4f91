//! The CRDs checked in under deploy/crds must be exactly what the Rust types generate.
//! Regenerate them with `cargo run -p lockstep -- crds --dir deploy/crds`.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = Path::new(&manifest_dir()).join("../../deploy/crds");
    for crd in lockstep_api::crd::all() {
        let name = lockstep_api::crd::file_name(&crd);
        let path = dir.join(&name);
        let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}); run `cargo run -p lockstep -- crds --dir deploy/crds`",
                path.display()
            )
        });
        assert!(
            checked_in == lockstep_api::crd::to_yaml(&crd),
            "{name} drifted from the Rust types; run `cargo run -p lockstep -- crds --dir deploy/crds`"
        );
    }
}

/// The package's folder: from cargo at run time (a test binary that cargo kept from a build of
/// another checkout of the same tree would otherwise look in that checkout), else as compiled.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
