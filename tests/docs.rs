//! The documentation stays true: the README's commands are the binary's, and
//! its two first commands are the ones CI and users rely on.

#[path = "support/bin.rs"]
mod bin;

fn help() -> String {
    let output = bin::faqbot().arg("--help").output().expect("run faqbot --help");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The subcommands `--help` lists (hidden ones are not listed).
fn commands_in_help() -> Vec<String> {
    let help = help();
    let section = help.split("Commands:").nth(1).unwrap_or_default();
    section
        .lines()
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_lists_every_command_and_no_other() {
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let listed: Vec<String> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `faqbot "))
        .filter_map(|rest| rest.split([' ', '`']).next())
        .map(str::to_owned)
        .collect();
    let mut in_help = commands_in_help();
    let mut in_readme = listed.clone();
    in_help.sort();
    in_readme.sort();
    in_readme.dedup();
    assert!(in_help.len() >= 7, "{in_help:?}");
    assert_eq!(in_readme, in_help, "README's command table and `faqbot --help` differ");
}

#[test]
fn the_readme_starts_with_the_main_job_and_the_test_command_ci_runs() {
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let first_block = readme.split("```sh").nth(1).and_then(|block| block.split("```").next()).unwrap_or_default();
    let commands: Vec<&str> = first_block
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands, ["cargo run --release -- chat", "cargo test --locked"]);
    let ci = std::fs::read_to_string(".ci/run").expect(".ci/run");
    assert!(ci.lines().any(|line| line.trim() == "cargo test --locked"), "CI must run the README's test command");
}
