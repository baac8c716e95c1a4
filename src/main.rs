//! `k3s`: a lightweight Kubernetes distribution in one binary.
//!
//! This crate is only the entry point: it parses flags (with the config file merged in),
//! prepares what a command needs and hands the work to the kernel's actors.

mod actors_cmd;
mod agent;
mod check_config;
mod cli;
mod client;
mod config;
mod inprocess;
mod join;
mod kubeconfig;
mod node;
mod server;
mod telemetry;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv = match config::expand_args(std::env::args_os().collect(), &|k| std::env::var(k).ok())
    {
        Ok(a) => a,
        Err(e) => return fail(&e.into()),
    };
    let cli = Cli::parse_from(argv);
    // One crypto provider for the whole process (aws-lc-rs), for any library that asks rustls
    // for the default. Failing means one is already installed, which is the same provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.command {
        Command::Kubectl { args } => kubectl(args),
        Command::CheckConfig => match check_config::run() {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(report) => {
                print!("{report}");
                eprintln!("k3s: error: this machine is missing what a node needs (see above)");
                ExitCode::FAILURE
            }
        },
        Command::Agent(args) => {
            let _telemetry = match telemetry::init(args.debug, args.otlp_endpoint.as_deref()) {
                Ok(t) => t,
                Err(e) => return fail(&e.into()),
            };
            runtime()
                .and_then(|rt| rt.block_on(agent::run(args)).map_err(Into::into))
                .map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
        }
        Command::Token { .. } => not_yet("token", "token management"),
        Command::Server(args) => {
            let _telemetry = match telemetry::init(args.debug, args.otlp_endpoint.as_deref()) {
                Ok(t) => t,
                Err(e) => return fail(&e.into()),
            };
            runtime()
                .and_then(|rt| rt.block_on(server::run(*args)).map_err(Into::into))
                .map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
        }
        Command::Actors(args) => {
            match runtime().and_then(|rt| rt.block_on(actors_cmd::run(args))) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("k3s")
        .build()?)
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("k3s: error: {e}");
    ExitCode::FAILURE
}

fn not_yet(command: &str, what: &str) -> ExitCode {
    eprintln!(
        "k3s: error: 'k3s {command}' is not yet supported in this build ({what} is not implemented yet)"
    );
    ExitCode::from(2)
}

/// `k3s kubectl ARGS`: exec the kubectl on PATH, defaulting KUBECONFIG to the admin kubeconfig.
fn kubectl(args: Vec<String>) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("kubectl");
    cmd.args(&args);
    if std::env::var_os("KUBECONFIG").is_none_or(|v| v.is_empty()) {
        cmd.env("KUBECONFIG", cli::DEFAULT_KUBECONFIG);
    }
    let err = cmd.exec();
    eprintln!("k3s: error: cannot run kubectl: {err} (is kubectl on PATH?)");
    ExitCode::from(127)
}
