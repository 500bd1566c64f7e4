//! `train --nodes N --node-rank R --coordinator HOST:PORT` and `coordinator --port P`: the
//! flags of data-parallel training (the work is `vae_train::data_parallel`), and the
//! coordinator process rank 0 starts when none is running.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Args;
use vae_train::data_parallel::DataParallelConfig;

use crate::error::CliError;

/// Data-parallel training over several processes (one per GPU, on one or several machines).
#[derive(Debug, Clone, Args)]
pub struct GroupArgs {
    /// Train data-parallel over N processes (ranks), each on its own device: one per GPU on
    /// this machine, or on several machines. training.batch_size is the global batch.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub nodes: u32,
    /// This process's rank, 0..N. Rank 0 writes the run; the others follow it (only
    /// --coordinator, --backend and --data-dir matter for them).
    #[arg(long, default_value_t = 0, value_name = "R")]
    pub node_rank: u32,
    /// The coordinator every rank registers with. Rank 0 starts one there when nothing
    /// listens on that port of this machine (or run `coordinator --port P` yourself).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:29500")]
    pub coordinator: String,
    /// This rank's address as the other ranks reach it (default 127.0.0.1: one machine).
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub node_host: String,
    /// The port this rank serves gradients on (default: the coordinator's port + 1 + rank).
    #[arg(long, value_name = "PORT")]
    pub data_port: Option<u16>,
    /// Seconds one exchange between ranks may take before this rank gives up and exits:
    /// it must cover waiting for every rank to join and load its data, and rank 0's
    /// validation and checkpoint between epochs.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub group_timeout: u64,
}

impl GroupArgs {
    /// The group this process joins, if `--nodes` is above 1.
    pub fn config(&self) -> Result<Option<DataParallelConfig>, CliError> {
        if self.nodes <= 1 && self.node_rank == 0 {
            return Ok(None);
        }
        if self.node_rank >= self.nodes {
            return Err(CliError::Usage {
                flag: "--node-rank",
                problem: format!(
                    "{} is not in 0..{} (ranks are numbered from 0 to --nodes − 1)",
                    self.node_rank, self.nodes
                ),
            });
        }
        let port = coordinator_port(&self.coordinator)?;
        let data_port = match self.data_port {
            Some(port) => port,
            None => u16::try_from(u32::from(port) + 1 + self.node_rank).map_err(|_| {
                CliError::Usage {
                    flag: "--data-port",
                    problem: format!(
                        "the coordinator's port {port} + 1 + rank {} is beyond 65535; give --data-port",
                        self.node_rank
                    ),
                }
            })?,
        };
        if self.group_timeout == 0 {
            return Err(CliError::Usage {
                flag: "--group-timeout",
                problem: "must be ≥ 1 second".into(),
            });
        }
        Ok(Some(DataParallelConfig {
            nodes: self.nodes,
            rank: self.node_rank,
            coordinator: self.coordinator.clone(),
            host: self.node_host.clone(),
            data_port,
            timeout: Duration::from_secs(self.group_timeout),
        }))
    }
}

fn coordinator_port(address: &str) -> Result<u16, CliError> {
    address
        .rsplit_once(':')
        .and_then(|(host, port)| (!host.is_empty()).then_some(port))
        .and_then(|port| port.parse().ok())
        .ok_or_else(|| CliError::Usage {
            flag: "--coordinator",
            problem: format!("'{address}' is not HOST:PORT"),
        })
}

/// Keeps burn-communication's connection tasks quiet: they panic when another rank closes its
/// sockets without a closing handshake — which ranks ending a run at different moments always
/// do — and the panic ends only that task (a lost rank in the middle of training is reported
/// by the next exchange, as an error naming the operation). Panics on other threads print as
/// before.
pub fn quiet_connection_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let connection_task = std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with("tokio-rt"));
        if !connection_task {
            default(info);
        }
    }));
}

/// `coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// The port to listen on (every rank's --coordinator names it).
    #[arg(long, default_value_t = 29500)]
    pub port: u16,
    /// Exit when the process that started this one exits (how rank 0 runs it).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

/// Runs the coordinator until interrupted (or until its parent exits, when asked to).
pub fn coordinator(args: CoordinatorArgs) -> Result<(), CliError> {
    // Fail on a taken port with its name, rather than inside burn-collective.
    drop(
        std::net::TcpListener::bind(("0.0.0.0", args.port)).map_err(|e| CliError::Usage {
            flag: "--port",
            problem: format!("cannot listen on port {}: {e}", args.port),
        })?,
    );
    if args.exit_with_parent {
        #[cfg(unix)]
        {
            let parent = std::os::unix::process::parent_id();
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(200));
                    if std::os::unix::process::parent_id() != parent {
                        std::process::exit(0);
                    }
                }
            });
        }
    } else {
        println!("coordinator listening on port {}", args.port);
    }
    vae_train::data_parallel::serve_coordinator(args.port).map_err(|e| CliError::Usage {
        flag: "--port",
        problem: format!("the coordinator stopped: {e}"),
    })
}

/// The coordinator rank 0 started; stopped when dropped.
pub struct CoordinatorProcess(Child);

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a coordinator on `address`'s port, as a child of this process, if `address` is this
/// machine (`node_host`, or a loopback name) and nothing listens on that port yet; `None`
/// otherwise (one is running, or it is on another machine).
pub fn start_coordinator(
    address: &str,
    node_host: &str,
) -> Result<Option<CoordinatorProcess>, CliError> {
    let port = coordinator_port(address)?;
    let host = address.rsplit_once(':').map_or("", |(host, _)| host);
    let here = host == node_host
        || matches!(
            host,
            "127.0.0.1" | "localhost" | "0.0.0.0" | "[::1]" | "::1"
        );
    if !here {
        return Ok(None);
    }
    if std::net::TcpListener::bind(("0.0.0.0", port)).is_err() {
        println!("rank 0: using the coordinator already listening on port {port}");
        return Ok(None);
    }
    let exe = std::env::current_exe().map_err(|e| CliError::Usage {
        flag: "--coordinator",
        problem: format!("cannot find this program to start the coordinator: {e}"),
    })?;
    let mut command = Command::new(exe);
    command
        .args([
            "coordinator",
            "--port",
            &port.to_string(),
            "--exit-with-parent",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // Its own process group: Ctrl-C in the terminal stops the ranks (which stop in step and
    // checkpoint), not the coordinator they still need for that.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command.spawn().map_err(|e| CliError::Usage {
        flag: "--coordinator",
        problem: format!("cannot start the coordinator: {e}"),
    })?;
    Ok(Some(CoordinatorProcess(child)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nodes: u32, rank: u32, coordinator: &str) -> GroupArgs {
        GroupArgs {
            nodes,
            node_rank: rank,
            coordinator: coordinator.into(),
            node_host: "127.0.0.1".into(),
            data_port: None,
            group_timeout: 30,
        }
    }

    #[test]
    fn group_flags_become_a_config_or_a_clear_error() {
        assert_eq!(args(1, 0, "127.0.0.1:29500").config().unwrap(), None);
        let config = args(3, 2, "10.0.0.1:4000").config().unwrap().unwrap();
        assert_eq!((config.nodes, config.rank, config.data_port), (3, 2, 4003));
        assert_eq!(config.coordinator, "10.0.0.1:4000");
        let error = args(2, 2, "127.0.0.1:29500")
            .config()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--node-rank") && error.contains("0..2"),
            "{error}"
        );
        let error = args(2, 1, "localhost").config().unwrap_err().to_string();
        assert!(
            error.contains("--coordinator") && error.contains("HOST:PORT"),
            "{error}"
        );
        let error = args(2, 1, "h:65535").config().unwrap_err().to_string();
        assert!(error.contains("--data-port"), "{error}");
    }
}
