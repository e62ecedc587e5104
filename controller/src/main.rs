//! `fleetgate-controller`: wiring only (arguments, logging, the chosen command).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use fleetgate_controller::cli;
use fleetgate_controller::derive::{
    DeriveOptions, DEFAULT_MIRROR_TEMPLATE, DEFAULT_UPSTREAM_TEMPLATE,
};

#[derive(Parser)]
#[command(
    name = "fleetgate-controller",
    version,
    about = "Derives the fleetgate plugin config from fleet Ingresses and member EndpointSlices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DeriveFlags {
    /// IngressClass handled by fleetgate.
    #[arg(long, env = "FLEETGATE_INGRESS_CLASS", default_value = "fleetgate")]
    ingress_class: String,
    /// Upstream (Envoy cluster) name template: {port} {cluster} {service} {namespace}.
    #[arg(long, env = "FLEETGATE_UPSTREAM_TEMPLATE", default_value = DEFAULT_UPSTREAM_TEMPLATE)]
    upstream_template: String,
    /// Mirror upstream template (same placeholders, {cluster} is empty).
    #[arg(long, env = "FLEETGATE_MIRROR_TEMPLATE", default_value = DEFAULT_MIRROR_TEMPLATE)]
    mirror_upstream_template: String,
    /// Response header the plugin sets to explain its decision.
    #[arg(long, env = "FLEETGATE_DECISION_HEADER")]
    decision_header: Option<String>,
}

impl DeriveFlags {
    fn options(&self) -> DeriveOptions {
        DeriveOptions {
            ingress_class: self.ingress_class.clone(),
            class_is_default: false,
            upstream_template: self.upstream_template.clone(),
            mirror_template: self.mirror_upstream_template.clone(),
            decision_header: self.decision_header.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print the plugin config derived from YAML dumps (no cluster needed).
    Render {
        /// Directory of fleet objects (Ingresses, IngressClasses, Argo CD cluster Secrets);
        /// repeatable, merged.
        #[arg(long, required = true)]
        fleet: Vec<PathBuf>,
        /// NAME=DIR: a member and its EndpointSlice dump (repeatable).
        #[arg(long = "member", value_parser = cli::split_pair)]
        members: Vec<(String, String)>,
        /// NAME=ZONE: a member's zone (overrides the Secret's).
        #[arg(long = "zone", value_parser = cli::split_pair)]
        zones: Vec<(String, String)>,
        #[command(flatten)]
        derive: DeriveFlags,
    },
    /// Show what the plugin would do with a request (the plugin's own engine).
    Explain {
        /// A plugin config JSON file (e.g. `render` output).
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = "")]
        host: String,
        #[arg(long, default_value = "/")]
        path: String,
        /// `name: value` request header (repeatable).
        #[arg(short = 'H', long = "header", value_parser = cli::split_header)]
        headers: Vec<(String, String)>,
        /// Run N requests and count where they go.
        #[arg(long)]
        simulate: Option<u32>,
        /// Seed of the random source.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Render {
            fleet,
            members,
            zones,
            derive,
        } => {
            let args = cli::RenderArgs {
                fleet,
                members: members
                    .into_iter()
                    .map(|(k, v)| (k, PathBuf::from(v)))
                    .collect(),
                zones,
                options: derive.options(),
            };
            let derived = cli::render(&args).context("render")?;
            for p in &derived.problems {
                eprintln!(
                    "warning: Ingress {} ({:?}): {}",
                    p.ingress, p.severity, p.message
                );
            }
            print!("{}", cli::pretty(&derived)?);
        }
        Command::Explain {
            config,
            host,
            path,
            headers,
            simulate,
            seed,
            json,
        } => {
            let args = cli::ExplainArgs {
                config,
                host,
                path,
                headers,
                simulate,
                seed,
            };
            match simulate {
                Some(n) => {
                    let sim = cli::simulate(&args, n).context("explain")?;
                    if json {
                        println!("{}", serde_json::to_string(&sim)?);
                    } else {
                        println!("{}", serde_json::to_string_pretty(&sim)?);
                    }
                }
                None => {
                    let e = cli::explain(&args).context("explain")?;
                    if json {
                        println!("{}", serde_json::to_string(&e)?);
                    } else {
                        print!("{}", cli::format_explanation(&e));
                    }
                }
            }
        }
    }
    Ok(())
}
