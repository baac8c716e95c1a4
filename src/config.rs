//! The config file: YAML whose keys are flag names, read before the command line is parsed.
//!
//! As in K3s, `/etc/rancher/k3s/config.yaml` (or `--config`/`K3S_CONFIG_FILE`) is read when it
//! exists, then every `*.yaml` in `config.yaml.d/` beside it in name order; a later file replaces an
//! earlier key, and a key ending in `+` appends to a list instead. The result becomes ordinary
//! flags placed before the real command line, so clap validates every value the same way and
//! precedence is: command line, then environment, then config file. Unknown keys are errors that
//! name the key and the file.

use clap::{ArgAction, CommandFactory};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cli::{Cli, DEFAULT_CONFIG};

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` named a file that does not exist.
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    /// The file exists but cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML, or not a mapping of flag names to values.
    #[error("config file {path} is not valid: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A key that is not a flag of this command.
    #[error("config file {path}: unknown key '{key}' (not a flag of 'k3s {command}')")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key as written.
        key: String,
        /// The subcommand being configured.
        command: String,
    },
    /// A value of the wrong shape for its flag.
    #[error("config file {path}: key '{key}': {reason}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong with the value.
        reason: String,
    },
}

/// How a flag takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Switch,
    Single,
    List,
}

/// A flag known to the subcommand: its shape and the environment variable that also sets it.
struct Flag {
    shape: Shape,
    env: Option<String>,
    short: Option<char>,
}

/// Return `argv` with the config file's settings inserted as flags after the subcommand.
///
/// `env` reads the environment (a parameter so tests never touch the process environment).
pub fn expand_args(
    argv: Vec<OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<OsString>, ConfigError> {
    let Some(sub) = argv.get(1).and_then(|s| s.to_str()).map(str::to_owned) else {
        return Ok(argv);
    };
    if sub != "server" && sub != "agent" {
        return Ok(argv);
    }
    let flags = flags_of(&sub);
    let cli_args: Vec<String> = argv[2..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (path, explicit) = match config_path_from_args(&cli_args) {
        Some(p) => (PathBuf::from(p), true),
        None => match env("K3S_CONFIG_FILE") {
            Some(p) if !p.is_empty() => (PathBuf::from(p), true),
            _ => (PathBuf::from(DEFAULT_CONFIG), false),
        },
    };
    let mut files = Vec::new();
    if path.exists() {
        files.push(path.clone());
    } else if explicit {
        return Err(ConfigError::Missing(path));
    }
    files.extend(drop_in_files(&path)?);

    // Merge: key -> values (switches hold "true"/"false").
    let mut merged: BTreeMap<String, (PathBuf, Vec<String>)> = BTreeMap::new();
    for file in &files {
        for (raw_key, value) in read_mapping(file)? {
            let (key, append) = match raw_key.strip_suffix('+') {
                Some(k) => (k.to_owned(), true),
                None => (raw_key.clone(), false),
            };
            let Some(flag) = flags.get(&key).filter(|_| key != "config") else {
                return Err(ConfigError::UnknownKey {
                    path: file.clone(),
                    key: raw_key,
                    command: sub,
                });
            };
            let values = values_for(file, &key, flag.shape, value)?;
            let entry = merged
                .entry(key)
                .or_insert_with(|| (file.clone(), Vec::new()));
            if !append {
                entry.1.clear();
            }
            entry.0 = file.clone();
            entry.1.extend(values);
        }
    }

    let mut out: Vec<OsString> = argv[..2].to_vec();
    for (key, (_, values)) in merged {
        let flag = &flags[&key];
        let on_cli = cli_args.iter().any(|a| {
            a == &format!("--{key}")
                || a.starts_with(&format!("--{key}="))
                || flag
                    .short
                    .is_some_and(|c| a.starts_with(&format!("-{c}")) && !a.starts_with("--"))
        });
        let in_env = flag.env.as_deref().and_then(env).is_some();
        if on_cli || in_env {
            continue;
        }
        match flag.shape {
            Shape::Switch => {
                if values.last().is_some_and(|v| v == "true") {
                    out.push(format!("--{key}").into());
                }
            }
            Shape::Single | Shape::List => out.extend(
                values
                    .iter()
                    .map(|v| OsString::from(format!("--{key}={v}"))),
            ),
        }
    }
    out.extend(argv[2..].iter().cloned());
    Ok(out)
}

fn flags_of(sub: &str) -> BTreeMap<String, Flag> {
    let cmd = Cli::command();
    let Some(sub) = cmd.find_subcommand(sub) else {
        return BTreeMap::new();
    };
    sub.get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?.to_owned();
            let shape = match a.get_action() {
                ArgAction::SetTrue | ArgAction::SetFalse => Shape::Switch,
                ArgAction::Append => Shape::List,
                _ => Shape::Single,
            };
            let env = a.get_env().map(|e| e.to_string_lossy().into_owned());
            Some((
                long,
                Flag {
                    shape,
                    env,
                    short: a.get_short(),
                },
            ))
        })
        .collect()
}

/// The value of `-c`/`--config` on the command line, if any.
fn config_path_from_args(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-c" || a == "--config" {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(v.to_owned());
        }
        if let Some(v) = a
            .strip_prefix("-c")
            .filter(|v| !v.is_empty() && !a.starts_with("--"))
        {
            return Some(v.trim_start_matches('=').to_owned());
        }
    }
    None
}

/// `<config>.d/*.yaml` in name order.
fn drop_in_files(config: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut dir = config.as_os_str().to_owned();
    dir.push(".d");
    let dir = PathBuf::from(dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path: dir, source }),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

fn read_mapping(path: &Path) -> Result<Vec<(String, serde_json::Value)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value =
        serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    match value {
        serde_json::Value::Object(map) => Ok(map.into_iter().collect()),
        serde_json::Value::Null => Ok(Vec::new()),
        other => Err(ConfigError::Parse {
            path: path.to_owned(),
            reason: format!(
                "expected a mapping of flag names to values, found {}",
                kind_of(&other)
            ),
        }),
    }
}

fn values_for(
    path: &Path,
    key: &str,
    shape: Shape,
    value: serde_json::Value,
) -> Result<Vec<String>, ConfigError> {
    let bad = |reason: String| ConfigError::BadValue {
        path: path.to_owned(),
        key: key.to_owned(),
        reason,
    };
    let scalar = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        other => Err(bad(format!(
            "expected a single value, found {}",
            kind_of(other)
        ))),
    };
    match (shape, &value) {
        (_, serde_json::Value::Null) => Ok(Vec::new()),
        (Shape::Switch, serde_json::Value::Bool(b)) => Ok(vec![b.to_string()]),
        (Shape::Switch, serde_json::Value::String(s)) if s == "true" || s == "false" => {
            Ok(vec![s.clone()])
        }
        (Shape::Switch, other) => Err(bad(format!(
            "expected true or false, found {}",
            kind_of(other)
        ))),
        (Shape::List, serde_json::Value::Array(items)) => items.iter().map(scalar).collect(),
        (Shape::Single, serde_json::Value::Array(_)) => {
            Err(bad("expected a single value, found a list".into()))
        }
        (_, v) => Ok(vec![scalar(v)?]),
    }
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "nothing",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter()
            .map(|s| s.into_string().expect("utf8"))
            .collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn keys_become_flags_before_the_command_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.yaml");
        fs::write(&cfg, "https-listen-port: 7443\ndisable-agent: true\ndebug: false\ntls-san: [a.example, 10.0.0.9]\n")
            .expect("write");
        let c = cfg.to_str().expect("utf8");
        let out = strings(
            expand_args(
                args(&["k3s", "server", "-c", c, "--node-name", "n1"]),
                &no_env,
            )
            .expect("ok"),
        );
        assert_eq!(
            out,
            [
                "k3s",
                "server",
                "--disable-agent",
                "--https-listen-port=7443",
                "--tls-san=a.example",
                "--tls-san=10.0.0.9",
                "-c",
                c,
                "--node-name",
                "n1"
            ]
        );
    }

    #[test]
    fn command_line_and_environment_win_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.yaml");
        fs::write(&cfg, "https-listen-port: 7443\ndata-dir: /from/file\n").expect("write");
        let c = cfg.to_str().expect("utf8");
        let env = |k: &str| (k == "K3S_DATA_DIR").then(|| "/from/env".to_owned());
        let out = strings(
            expand_args(
                args(&["k3s", "server", "--config", c, "--https-listen-port=1"]),
                &env,
            )
            .expect("ok"),
        );
        assert!(
            !out.iter()
                .any(|a| a.contains("7443") || a.contains("/from/file")),
            "{out:?}"
        );
    }

    #[test]
    fn drop_in_files_replace_or_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.yaml");
        fs::write(&cfg, "disable: [traefik]\nnode-name: a\n").expect("write");
        fs::create_dir(dir.path().join("config.yaml.d")).expect("mkdir");
        fs::write(
            dir.path().join("config.yaml.d/10-more.yaml"),
            "disable+: [servicelb]\nnode-name: b\n",
        )
        .expect("write");
        let c = cfg.to_str().expect("utf8");
        let out = strings(expand_args(args(&["k3s", "server", "-c", c]), &no_env).expect("ok"));
        assert!(
            out.contains(&"--disable=traefik".to_owned())
                && out.contains(&"--disable=servicelb".to_owned())
        );
        assert!(
            out.contains(&"--node-name=b".to_owned()) && !out.contains(&"--node-name=a".to_owned())
        );
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.yaml");
        let c = cfg.to_str().expect("utf8").to_owned();
        let run = |body: &str| {
            fs::write(&cfg, body).expect("write");
            expand_args(args(&["k3s", "server", "-c", &c]), &no_env)
                .expect_err("must fail")
                .to_string()
        };
        let e = run("no-such-key: 1\n");
        assert!(
            e.contains("unknown key 'no-such-key'") && e.contains(&c),
            "{e}"
        );
        let e = run("disable-agent: maybe\n");
        assert!(
            e.contains("disable-agent") && e.contains("true or false"),
            "{e}"
        );
        let e = run("node-name: [a, b]\n");
        assert!(e.contains("node-name") && e.contains("single value"), "{e}");
        let e = run("- just\n- a list\n");
        assert!(e.contains("expected a mapping"), "{e}");
        let e = run("key: [unclosed\n");
        assert!(e.contains("is not valid"), "{e}");
        let missing = dir.path().join("nope.yaml");
        let e = expand_args(
            args(&["k3s", "server", "--config", missing.to_str().expect("utf8")]),
            &no_env,
        )
        .expect_err("must fail")
        .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn other_subcommands_are_untouched() {
        let a = args(&["k3s", "kubectl", "get", "pods", "-c", "x"]);
        assert_eq!(expand_args(a.clone(), &no_env).expect("ok"), a);
    }
}
