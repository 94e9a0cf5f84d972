//! The `mlcd` binary: set up logging and a runtime, run the invocation, and exit
//! with its documented code (0 ok, 1 failed, 2 invalid input, 3 timed out, 4 cancelled).

use std::process::ExitCode;

fn main() -> ExitCode {
    let env: std::collections::BTreeMap<String, String> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let default_level = if env.get("RUNNER_DEBUG").map(String::as_str) == Some("1") {
        "debug"
    } else {
        "warn"
    };
    env_logger::Builder::from_env(env_logger::Env::new().filter_or("MLCD_LOG", default_level))
        .format(|buf, record| {
            use std::io::Write;
            let level = record.level().as_str().to_ascii_lowercase();
            let msg = mlcd::secrets::redact(&record.args().to_string());
            writeln!(buf, "{level}: {msg}")
        })
        .target(env_logger::Target::Stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(mlcd::run::main_with(std::env::args_os().collect(), env));
    ExitCode::from(code)
}
