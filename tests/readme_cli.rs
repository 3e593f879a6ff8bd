//! The README's command-line examples print exactly what the README shows:
//! `keyfilter explain` of `docs/examples/or-not.json`, and `keyfilter dis` of
//! the spec file the README's "Spec file format" section defines.

mod support;

const README: &str = include_str!("../README.md");

/// The text between `marker` and the end of its code block in the README.
fn shown_after(marker: &str) -> &'static str {
    README
        .split(marker)
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("the README shows {marker:?}"))
}

/// What `keyfilter ARGS` prints, run from the repository's root.
fn printed(args: &[&str]) -> String {
    let out = support::binary::command(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("keyfilter runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn explain_prints_the_plan_the_readme_shows() {
    let printed = printed(&["explain", "--spec", "docs/examples/or-not.json"]);
    assert_eq!(
        printed,
        shown_after("$ keyfilter explain --spec docs/examples/or-not.json\n")
    );
}

#[test]
fn dis_of_the_readme_spec_file_prints_what_the_readme_shows() {
    let section = README
        .split("## Spec file format\n")
        .nth(1)
        .expect("the README has the section");
    let spec = section
        .split("```json\n")
        .nth(1)
        .and_then(|block| block.split("```").next())
        .expect("the section shows a spec file");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("spec.json");
    std::fs::write(&path, spec).expect("the spec file");
    let printed = printed(&["dis", "--spec", path.to_str().expect("UTF-8 path"), "--python", "3.13"]);
    assert_eq!(printed, shown_after("$ keyfilter dis --spec spec.json --python 3.13\n"));
}
