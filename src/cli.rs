//! Command-line interface: subcommands and flags with K3s's names and defaults.
//!
//! Every flag also reads `K3S_<NAME>` from the environment and can be set in the config file
//! (see [`crate::config`]). Values are validated here by their types (CIDRs, ports, modes), so
//! a bad value is an error that names the flag before anything starts.

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::PathBuf;

/// K3s's default data directory for a server run as root.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/rancher/k3s";
/// Where the admin kubeconfig goes unless `--write-kubeconfig` says otherwise.
pub const DEFAULT_KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";
/// The config file read when it exists (plus `config.yaml.d/*.yaml` beside it).
pub const DEFAULT_CONFIG: &str = "/etc/rancher/k3s/config.yaml";

/// A lightweight Kubernetes in one binary.
#[derive(Debug, Parser)]
#[command(name = "k3s", version, about, propagate_version = true)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands, as K3s has them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (and, unless --disable-agent, a node agent) in one process.
    Server(Box<ServerArgs>),
    /// Run a node agent that joins a server.
    Agent(AgentArgs),
    /// Run kubectl against this server (KUBECONFIG defaults to the admin kubeconfig).
    #[command(disable_help_flag = true)]
    Kubectl {
        /// Arguments passed to kubectl unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Show and control the running server's actor tree.
    Actors(ActorsArgs),
    /// Manage join tokens.
    Token {
        /// Arguments for the token command.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Check that this machine can run a node.
    CheckConfig,
}

/// Flags of `k3s server`.
#[derive(Debug, Args, Clone)]
#[command(args_override_self = true)]
pub struct ServerArgs {
    /// Config file (YAML; keys are flag names). config.yaml.d/*.yaml beside it is read too.
    #[arg(short = 'c', long = "config", env = "K3S_CONFIG_FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Turn on debug logging.
    #[arg(long, env = "K3S_DEBUG")]
    pub debug: bool,
    /// Folder to hold state.
    #[arg(short = 'd', long, env = "K3S_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// HTTPS listen port.
    #[arg(long, env = "K3S_HTTPS_LISTEN_PORT", default_value_t = 6443,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub https_listen_port: u16,
    /// Address to listen on.
    #[arg(long, env = "K3S_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Address the API server advertises to members of the cluster (default: node IP).
    #[arg(long, env = "K3S_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<IpAddr>,
    /// Node name (default: the host name).
    #[arg(long, env = "K3S_NODE_NAME")]
    pub node_name: Option<String>,
    /// IP address to advertise for the node (default: the address of the default route).
    #[arg(long, env = "K3S_NODE_IP")]
    pub node_ip: Option<IpAddr>,
    /// Extra labels for this node, key=value (repeatable, or a comma list).
    #[arg(long = "node-label", env = "K3S_NODE_LABEL", value_delimiter = ',')]
    pub node_label: Vec<String>,
    /// Write the admin kubeconfig to this file.
    #[arg(short = 'o', long, env = "K3S_WRITE_KUBECONFIG", default_value = DEFAULT_KUBECONFIG)]
    pub write_kubeconfig: PathBuf,
    /// Mode of the admin kubeconfig file, in octal.
    #[arg(long, env = "K3S_WRITE_KUBECONFIG_MODE", default_value = "0600", value_parser = parse_mode)]
    pub write_kubeconfig_mode: u32,
    /// Shared secret used to join servers and agents (default: generated).
    #[arg(short = 't', long, env = "K3S_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the token.
    #[arg(long, env = "K3S_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Datastore: empty for embedded SQLite, or sqlite://, postgres://, mysql://, http(s):// (etcd).
    #[arg(long, env = "K3S_DATASTORE_ENDPOINT", hide_env_values = true)]
    pub datastore_endpoint: Option<String>,
    /// TLS CA file for the datastore.
    #[arg(long, env = "K3S_DATASTORE_CAFILE")]
    pub datastore_cafile: Option<PathBuf>,
    /// TLS client certificate for the datastore.
    #[arg(long, env = "K3S_DATASTORE_CERTFILE")]
    pub datastore_certfile: Option<PathBuf>,
    /// TLS client key for the datastore.
    #[arg(long, env = "K3S_DATASTORE_KEYFILE")]
    pub datastore_keyfile: Option<PathBuf>,
    /// Do not deploy these packaged components (repeatable, or a comma list).
    #[arg(long, env = "K3S_DISABLE", value_delimiter = ',')]
    pub disable: Vec<String>,
    /// Do not run a node agent in this process.
    #[arg(long, env = "K3S_DISABLE_AGENT")]
    pub disable_agent: bool,
    /// Use this containerd socket instead of starting containerd as a child process.
    #[arg(long, env = "K3S_CONTAINER_RUNTIME_ENDPOINT")]
    pub container_runtime_endpoint: Option<PathBuf>,
    /// Network CIDR for pod IPs.
    #[arg(long, env = "K3S_CLUSTER_CIDR", default_value = "10.42.0.0/16")]
    pub cluster_cidr: IpNet,
    /// Network CIDR for service IPs.
    #[arg(long, env = "K3S_SERVICE_CIDR", default_value = "10.43.0.0/16")]
    pub service_cidr: IpNet,
    /// Cluster IP of the DNS service (must be inside --service-cidr).
    #[arg(long, env = "K3S_CLUSTER_DNS", default_value = "10.43.0.10")]
    pub cluster_dns: IpAddr,
    /// Cluster domain.
    #[arg(long, env = "K3S_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Extra host names or IPs for the serving certificate (repeatable, or a comma list).
    #[arg(long, env = "K3S_TLS_SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// Send OpenTelemetry traces to this OTLP/gRPC endpoint (also OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(long, env = "K3S_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// Flags of `k3s agent`.
#[derive(Debug, Args, Clone)]
#[command(args_override_self = true)]
pub struct AgentArgs {
    /// Config file (YAML; keys are flag names).
    #[arg(short = 'c', long = "config", env = "K3S_CONFIG_FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Turn on debug logging.
    #[arg(long, env = "K3S_DEBUG")]
    pub debug: bool,
    /// Server to connect to, e.g. https://10.0.0.1:6443.
    #[arg(short = 's', long, env = "K3S_URL")]
    pub server: Option<String>,
    /// Token to use for authentication.
    #[arg(short = 't', long, env = "K3S_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the token.
    #[arg(long, env = "K3S_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Folder to hold state.
    #[arg(short = 'd', long, env = "K3S_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Node name (default: the host name).
    #[arg(long, env = "K3S_NODE_NAME")]
    pub node_name: Option<String>,
    /// IP address to advertise for the node.
    #[arg(long, env = "K3S_NODE_IP")]
    pub node_ip: Option<IpAddr>,
    /// Extra labels for this node, key=value (repeatable, or a comma list).
    #[arg(long = "node-label", env = "K3S_NODE_LABEL", value_delimiter = ',')]
    pub node_label: Vec<String>,
    /// Send OpenTelemetry traces to this OTLP/gRPC endpoint.
    #[arg(long, env = "K3S_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// `k3s actors ...`
#[derive(Debug, Args)]
pub struct ActorsArgs {
    /// Kubeconfig with admin credentials (default: $KUBECONFIG, then /etc/rancher/k3s/k3s.yaml).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Output format: tree (default) or json.
    #[arg(short = 'o', long, global = true, default_value = "tree", value_parser = ["tree", "json"])]
    pub output: String,
    /// What to do.
    #[command(subcommand)]
    pub action: ActorsAction,
}

/// The actor controls.
#[derive(Debug, Subcommand, Clone)]
pub enum ActorsAction {
    /// Print the actor tree with status, restarts and mailbox depth.
    List,
    /// Restart an actor (counts as a restart).
    Restart {
        /// Actor path, e.g. server/pki.
        path: String,
    },
    /// Stop an actor; its supervisor will not restart it.
    Stop {
        /// Actor path.
        path: String,
    },
    /// Start a stopped actor.
    Start {
        /// Actor path.
        path: String,
    },
    /// Make an actor panic, to exercise supervision.
    Panic {
        /// Actor path.
        path: String,
    },
}

impl ActorsAction {
    /// The action's name on the introspection endpoint and the path it targets.
    pub fn verb_and_path(&self) -> Option<(&'static str, &str)> {
        match self {
            ActorsAction::List => None,
            ActorsAction::Restart { path } => Some(("restart", path)),
            ActorsAction::Stop { path } => Some(("stop", path)),
            ActorsAction::Start { path } => Some(("start", path)),
            ActorsAction::Panic { path } => Some(("panic", path)),
        }
    }
}

/// Parse a file mode given in octal ("0600", "644").
fn parse_mode(s: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("'{s}' is not an octal file mode such as 0600 or 0644"))?;
    if mode > 0o7777 {
        return Err(format!("'{s}' is larger than 07777"));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn modes_parse_as_octal() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("rw-").is_err());
    }

    #[test]
    fn defaults_follow_k3s() {
        let cli = Cli::try_parse_from(["k3s", "server"]).expect("parse");
        let Command::Server(s) = cli.command else {
            panic!("server")
        };
        assert_eq!(s.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(s.https_listen_port, 6443);
        assert_eq!(s.cluster_cidr.to_string(), "10.42.0.0/16");
        assert_eq!(s.service_cidr.to_string(), "10.43.0.0/16");
        assert_eq!(s.cluster_dns.to_string(), "10.43.0.10");
        assert_eq!(s.write_kubeconfig_mode, 0o600);
    }

    #[test]
    fn lists_accept_repeats_and_commas() {
        let cli = Cli::try_parse_from([
            "k3s",
            "server",
            "--disable",
            "traefik,servicelb",
            "--disable=coredns",
        ])
        .expect("parse");
        let Command::Server(s) = cli.command else {
            panic!("server")
        };
        assert_eq!(s.disable, ["traefik", "servicelb", "coredns"]);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (vec!["--cluster-cidr", "10.42.0.0/33"], "--cluster-cidr"),
            (vec!["--https-listen-port", "0"], "--https-listen-port"),
            (vec!["--https-listen-port", "70000"], "--https-listen-port"),
            (
                vec!["--write-kubeconfig-mode", "rwx"],
                "--write-kubeconfig-mode",
            ),
            (vec!["--no-such-flag"], "--no-such-flag"),
        ] {
            let mut argv = vec!["k3s", "server"];
            argv.extend(args);
            let err = Cli::try_parse_from(argv)
                .expect_err("must fail")
                .to_string();
            assert!(err.contains(flag), "{err}");
        }
    }
}
