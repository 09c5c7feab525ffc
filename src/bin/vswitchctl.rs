//! `vswitchctl`: the client of vswitchd. Parses verbs, calls the daemon's API, prints tables
//! or JSON, maps errors to exit codes (see [`vswitchd::cli`]).

use clap::Parser;
use vswitchd::cli::{Cli, Command};
use vswitchd::client::Client;

fn main() {
    // `run`'s child re-executes this binary; it must enter its namespaces while still
    // single-threaded, before anything else happens.
    let mut argv = std::env::args_os();
    if argv.nth(1).as_deref() == Some(netns_helper::fresh::CHILD_ARG.as_ref()) {
        netns_helper::fresh::child_main(argv.collect());
    }
    let cli = Cli::parse();
    let socket = cli.socket.clone().unwrap_or_else(vswitchd::paths::socket);
    let client = Client::new(&socket);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        match cli.command {
            Command::Network(cmd) => vswitchd::cli::network(&client, cmd).await,
            Command::Run(args) => vswitchd::run::run(&client, args).await,
            Command::Port(cmd) => vswitchd::cli::port(&client, cmd).await,
            Command::Stats { network } => vswitchd::cli::stats(&client, &network).await,
            Command::Capture(args) => vswitchd::cli::capture(&client, args).await,
            Command::Events(args) => vswitchd::cli::events(&client, args).await,
            Command::Flows { network, format } => {
                vswitchd::cli::flows(&client, &network, format).await
            }
        }
    });
    std::process::exit(code);
}
