//! Developer and CI tasks: `cargo xtask <command>`.

mod lint;
mod package;
mod venv;

const USAGE: &str = "usage: cargo xtask <command>\n\ncommands:";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = venv::repo_root().and_then(|root| match args.first().map(String::as_str) {
        Some("lint") => lint::run(&root, &args[1..]),
        Some("package") => package::run(&root, &args[1..]),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}\n  {}\n  {}", lint::USAGE, package::USAGE);
            Ok(0)
        }
        other => {
            eprintln!(
                "xtask: unknown command {other:?}\n\n{USAGE}\n  {}\n  {}",
                lint::USAGE,
                package::USAGE
            );
            Ok(2)
        }
    });
    std::process::exit(match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            1
        }
    });
}
