//! The `needscope` binary: all behaviour lives in the library and `cli`.

mod cli;

/// mimalloc: the classifier allocates small, short-lived buffers per request; glibc's
/// allocator cost about a tenth of server time under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
