//! deploy/fortnight.example.toml is the documented example: it must load, and say what it
//! claims to say.

use std::path::PathBuf;

use settings::{Settings, WhenNothingPassed};

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/fortnight.example.toml")
}

#[test]
fn the_example_config_loads_with_its_five_streams() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let settings = Settings::from_toml(&text).unwrap();
    let names: Vec<&str> = settings.streams.keys().map(|s| s.as_str()).collect();
    assert_eq!(names, ["f42", "f43", "f43-testing", "f44", "rawhide"]);
    let f44 = &settings.streams[&"f44".parse().unwrap()];
    assert_eq!(f44.prerelease.as_ref().map(|l| l.as_str()), Some("beta"));
    assert_eq!(
        settings
            .successor(&"f43".parse().unwrap())
            .map(|(s, _)| s.as_str()),
        Some("f44")
    );

    let f43 = &settings.streams[&"f43".parse().unwrap()];
    let arches: Vec<&str> = f43.arches.iter().map(|a| a.as_str()).collect();
    assert_eq!(arches, ["x86_64", "aarch64"]);
    let twoweek = f43.twoweek.as_ref().expect("f43 releases every two weeks");
    assert_eq!(twoweek.period_days, 14);
    assert_eq!(twoweek.when_nothing_passed, WhenNothingPassed::Skip);
    assert_eq!(
        f43.recipes.len(),
        2,
        "recipe keys with a dot (raw.xz) survive loading"
    );
    let ci = f43
        .fedora_ci
        .as_ref()
        .expect("f43 sends Fedora CI messages");
    assert_eq!(ci.contact.name, "Fortnight");
    assert_eq!(ci.contact.irc.as_deref(), Some("#fedora-releng"));
    let gating: Vec<&str> = f43.external_gating.iter().map(|t| t.as_str()).collect();
    assert_eq!(gating, ["openqa.install_default"]);
    for nightly_only in ["f42", "rawhide", "f43-testing"] {
        let stream = &settings.streams[&nightly_only.parse().unwrap()];
        assert!(stream.twoweek.is_none(), "{nightly_only} is nightly only");
    }
    let testing = &settings.streams[&"f43-testing".parse().unwrap()];
    assert!(
        testing
            .input_refs
            .values()
            .all(|r| r.as_str().contains("/testing/"))
    );

    assert_eq!(
        settings.queue_name("image-builder"),
        "fortnight.image-builder"
    );
    assert_eq!(settings.consumer("releaser").retry_delays_seconds, [5, 30]);
    assert_eq!(settings.consumer("site-publisher").max_attempts, 5);
}
