//! Applying rulesets to the kernel through the iptables tools.
//!
//! One sync is: read which of our dynamic chains exist (`iptables-save -t nat`), render, apply
//! the whole ruleset in one `iptables-restore --noflush` transaction, then make sure each jump
//! rule from a built-in chain is present exactly once (`iptables -S`, `-D` extras, `-I` missing
//! ones at the top). Cleanup removes the jump rules, then flushes and deletes our chains.
//!
//! Every command can run behind a prefix (`nsenter --net=/run/netns/X`), which is how tests
//! work in a private network namespace without touching the host's rules.

use crate::model::ServicePort;
use crate::render::{self, Jump};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// Failures of the iptables tools.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    /// The program could not be started (not installed, not in PATH).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `iptables-restore` refused the ruleset.
    #[error("iptables-restore refused the ruleset: {stderr}{}", line.as_ref().map(|l| format!(" (the line: {l})")).unwrap_or_default())]
    Restore {
        /// What it printed on stderr.
        stderr: String,
        /// The input line it named, when it named one.
        line: Option<String>,
    },
    /// `net.ipv4.ip_forward` could not be turned on.
    #[error("cannot enable net.ipv4.ip_forward: {0}")]
    Forwarding(#[source] std::io::Error),
}

/// The iptables tools, run directly or behind a command prefix.
#[derive(Clone, Debug, Default)]
pub struct Iptables {
    prefix: Vec<String>,
}

impl Iptables {
    /// Run the tools on this host's network namespace.
    pub fn host() -> Self {
        Self::default()
    }

    /// Run the tools in the network namespace at `path` (`/run/netns/NAME`), through `nsenter`.
    pub fn in_netns(path: &std::path::Path) -> Self {
        Iptables {
            prefix: vec!["nsenter".into(), format!("--net={}", path.display())],
        }
    }

    async fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, IptablesError> {
        let (bin, rest): (&str, Vec<&str>) = match self.prefix.split_first() {
            Some((first, more)) => {
                let mut v: Vec<&str> = more.iter().map(String::as_str).collect();
                v.push(program);
                v.extend_from_slice(args);
                (first.as_str(), v)
            }
            None => (program, args.to_vec()),
        };
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(&rest)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| IptablesError::Spawn {
            program: bin.to_owned(),
            source,
        })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A write error shows up as the program's failure below.
            let _ = pipe.write_all(text.as_bytes()).await;
            drop(pipe);
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| IptablesError::Spawn {
                program: bin.to_owned(),
                source,
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(IptablesError::Failed {
                command: format!("{bin} {}", rest.join(" ")),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Apply `text` in one transaction without flushing chains it does not declare.
    pub async fn restore(&self, text: &str) -> Result<(), IptablesError> {
        match self
            .run("iptables-restore", &["-w", "--noflush"], Some(text))
            .await
        {
            Ok(_) => Ok(()),
            Err(IptablesError::Failed { stderr, .. }) => {
                let line = failed_line(&stderr)
                    .and_then(|n| text.lines().nth(n - 1))
                    .map(str::to_owned);
                Err(IptablesError::Restore { stderr, line })
            }
            Err(e) => Err(e),
        }
    }

    /// `iptables-save` of one table.
    pub async fn save(&self, table: &str) -> Result<String, IptablesError> {
        self.run("iptables-save", &["-t", table], None).await
    }

    /// Names of the chains of `table`.
    pub async fn chains(&self, table: &str) -> Result<BTreeSet<String>, IptablesError> {
        Ok(chain_names(&self.save(table).await?))
    }

    /// Apply the ruleset for `ports` and make sure the jump rules are in place.
    pub async fn sync(
        &self,
        ports: &[ServicePort],
        cluster_cidr: &IpNet,
    ) -> Result<render::Ruleset, IptablesError> {
        let present = self.chains("nat").await?;
        let rules = render::render(ports, cluster_cidr, &present);
        self.restore(&rules.text).await?;
        self.ensure_jumps().await?;
        Ok(rules)
    }

    /// Each jump rule present exactly once, at the top of its built-in chain.
    pub async fn ensure_jumps(&self) -> Result<(), IptablesError> {
        let jumps = render::jumps();
        let mut missing: Vec<&Jump> = Vec::new();
        for j in &jumps {
            let listing = self
                .run("iptables", &["-w", "-t", j.table, "-S", j.chain], None)
                .await?;
            let count = listing.lines().filter(|l| is_jump(l, j)).count();
            for _ in 1..count {
                self.delete_jump(j).await?;
            }
            if count == 0 {
                missing.push(j);
            }
        }
        // Inserting at position 1 in reverse keeps the order of `jumps()`.
        for j in missing.into_iter().rev() {
            let mut args = vec!["-w", "-t", j.table, "-I", j.chain, "1"];
            args.extend(j.rule.iter().copied());
            self.run("iptables", &args, None).await?;
        }
        Ok(())
    }

    async fn delete_jump(&self, j: &Jump) -> Result<(), IptablesError> {
        let mut args = vec!["-w", "-t", j.table, "-D", j.chain];
        args.extend(j.rule.iter().copied());
        self.run("iptables", &args, None).await.map(drop)
    }

    /// Remove the jump rules and every chain of ours.
    pub async fn cleanup(&self) -> Result<(), IptablesError> {
        for j in render::jumps() {
            // `-D` removes one copy per call; stop when none is left (bounded, in case).
            for _ in 0..64 {
                if self.delete_jump(&j).await.is_err() {
                    break;
                }
            }
        }
        let nat = self.chains("nat").await?;
        let filter = self.chains("filter").await?;
        self.restore(&render::cleanup(&nat, &filter)).await
    }

    /// Turn on IPv4 forwarding (pods' traffic is routed through the node).
    pub async fn enable_forwarding(&self) -> Result<(), IptablesError> {
        const KEY: &str = "/proc/sys/net/ipv4/ip_forward";
        if self.prefix.is_empty() {
            let now = tokio::fs::read_to_string(KEY)
                .await
                .map_err(IptablesError::Forwarding)?;
            if now.trim() != "1" {
                tokio::fs::write(KEY, b"1\n")
                    .await
                    .map_err(IptablesError::Forwarding)?;
            }
            Ok(())
        } else {
            self.run("sh", &["-c", &format!("echo 1 > {KEY}")], None)
                .await
                .map(drop)
        }
    }
}

/// Whether an `iptables -S` line is the jump `j`.
fn is_jump(line: &str, j: &Jump) -> bool {
    line.starts_with(&format!("-A {} ", j.chain))
        && line.contains(&format!("--comment \"{}\"", j.comment))
        && line.trim_end().ends_with(&format!("-j {}", j.target))
}

/// Chain names declared in `iptables-save` output (`:NAME POLICY [p:b]`).
fn chain_names(save: &str) -> BTreeSet<String> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The input line number `iptables-restore` blames (`line 12 failed`).
fn failed_line(stderr: &str) -> Option<usize> {
    let at = stderr.find("line ")?;
    stderr[at + 5..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tool_output() {
        let save = "# Generated\n*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SVC-ABC - [0:0]\n-A KUBE-SVC-ABC -j RETURN\nCOMMIT\n";
        assert_eq!(
            chain_names(save),
            BTreeSet::from(["PREROUTING".to_owned(), "KUBE-SVC-ABC".to_owned()])
        );
        assert_eq!(failed_line("iptables-restore: line 12 failed"), Some(12));
        assert_eq!(failed_line("Bad argument"), None);
        let j = &render::jumps()[4];
        assert!(is_jump(
            "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
            j
        ));
        assert!(!is_jump(
            "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
            j
        ));
    }
}
