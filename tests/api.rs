//! End to end: the Kubernetes API as kubectl 1.32 uses it, against the real binary
//! (`k3s server --disable-agent`), each test with its own server and discovery cache.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

struct Kc<'a> {
    s: &'a Server,
    cache: tempfile::TempDir,
}

impl<'a> Kc<'a> {
    fn new(s: &'a Server) -> Self {
        Kc {
            s,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(self.s.kubeconfig())
            .arg("--cache-dir")
            .arg(self.cache.path())
            .arg("--request-timeout=30s")
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run and require success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "kubectl {args:?} failed:\n{}{}\n--- server log tail:\n{}",
            stdout(&o),
            stderr(&o),
            tail(&self.s.logs())
        );
        stdout(&o)
    }

    /// Run and require failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "kubectl {args:?} unexpectedly succeeded:\n{}",
            stdout(&o)
        );
        stderr(&o)
    }

    fn apply_stdin(&self, args: &[&str], yaml: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

fn tail(s: &str) -> String {
    s.lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn discovery_version_and_bootstrap_objects() {
    let s = Server::start(&[]);
    let kc = Kc::new(&s);
    assert!(kc.ok(&["version"]).contains("Server Version: v1.32."));
    let res = kc.ok(&["api-resources"]);
    assert!(res.contains("customresourcedefinitions"), "{res}");
    assert!(
        res.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["deployments", "deploy", "apps/v1", "true", "Deployment"]),
        "{res}"
    );
    let ns = kc.ok(&["get", "ns"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(n), "{ns}");
    }
    let svc = kc.ok(&["get", "svc", "-n", "default", "--no-headers"]);
    assert!(
        svc.starts_with("kubernetes ") && svc.contains("ClusterIP") && svc.contains("10.43.0.1 "),
        "{svc}"
    );
    assert!(
        kc.ok(&["get", "--raw", "/api/v1"])
            .contains("pods/eviction")
    );
}

#[test]
fn typed_create_commands_send_protobuf() {
    let s = Server::start(&[]);
    let kc = Kc::new(&s);
    kc.ok(&["create", "namespace", "acc"]);
    kc.ok(&[
        "-n",
        "acc",
        "create",
        "configmap",
        "cm1",
        "--from-literal=a=1",
        "--from-literal=b=2",
    ]);
    assert_eq!(
        kc.ok(&["-n", "acc", "get", "cm", "cm1", "-o", "jsonpath={.data.a}"]),
        "1"
    );
    kc.ok(&[
        "-n",
        "acc",
        "create",
        "secret",
        "generic",
        "s1",
        "--from-literal=p=x",
    ]);
    assert_eq!(
        kc.ok(&[
            "-n",
            "acc",
            "get",
            "secret",
            "s1",
            "-o",
            "jsonpath={.data.p}"
        ]),
        "eA=="
    );
    kc.ok(&[
        "-n",
        "acc",
        "create",
        "deployment",
        "made",
        "--image=busybox:acc",
        "--replicas=2",
    ]);
    kc.ok(&["-n", "acc", "create", "serviceaccount", "robot"]);
    assert!(
        kc.ok(&["auth", "can-i", "create", "pods", "-n", "acc"])
            .starts_with("yes")
    );
    let e = kc.fails(&[
        "-n",
        "nope",
        "create",
        "configmap",
        "x",
        "--from-literal=a=b",
    ]);
    assert!(e.contains("namespaces \"nope\" not found"), "{e}");
}

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: acc
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: busybox:acc
        env: [{name: A, value: "1"}]
      - name: side
        image: busybox:acc
"#;

#[test]
fn apply_patch_scale_and_tables() {
    let s = Server::start(&[]);
    let kc = Kc::new(&s);
    kc.ok(&["create", "namespace", "acc"]);
    let o = kc.apply_stdin(&["apply", "-f", "-"], WEB);
    assert!(
        stdout(&o).contains("deployment.apps/web created"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = kc.apply_stdin(&["apply", "-f", "-"], WEB);
    assert!(
        stdout(&o).contains("deployment.apps/web unchanged"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = kc.apply_stdin(
        &["apply", "-f", "-"],
        &WEB.replace("replicas: 2", "replicas: 4"),
    );
    assert!(
        stdout(&o).contains("deployment.apps/web configured"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let get = |path: &str| {
        kc.ok(&[
            "-n",
            "acc",
            "get",
            "deploy",
            "web",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    assert_eq!(get("{.spec.replicas}"), "4");
    assert_eq!(get("{.spec.strategy.rollingUpdate.maxSurge}"), "25%");
    assert_eq!(get("{.spec.template.spec.dnsPolicy}"), "ClusterFirst");
    assert_eq!(get("{.metadata.generation}"), "2");
    let wide = kc.ok(&["-n", "acc", "get", "deploy", "-o", "wide"]);
    assert!(
        wide.split_whitespace().take(8).collect::<Vec<_>>()
            == [
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ],
        "{wide}"
    );
    assert!(kc.ok(&["get", "deploy", "-A"]).starts_with("NAMESPACE"));
    assert!(
        kc.ok(&["-n", "acc", "get", "deploy", "web", "--show-labels"])
            .contains("LABELS")
    );

    kc.ok(&["-n", "acc", "patch", "deploy", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","env":[{"name":"B","value":"2"}]}]}}}}"#]);
    assert_eq!(get("{.spec.template.spec.containers[*].name}"), "main side");
    let env = get("{.spec.template.spec.containers[0].env[*].name}");
    assert!(env == "A B" || env == "B A", "{env}");
    kc.ok(&["-n", "acc", "scale", "deploy", "web", "--replicas=3"]);
    assert_eq!(get("{.spec.replicas}"), "3");

    kc.ok(&[
        "-n",
        "acc",
        "create",
        "configmap",
        "cm1",
        "--from-literal=a=1",
        "--from-literal=b=2",
    ]);
    kc.ok(&["-n", "acc", "label", "cm", "cm1", "env=test"]);
    assert_eq!(
        kc.ok(&[
            "-n",
            "acc",
            "get",
            "cm",
            "-l",
            "env=test",
            "-o",
            "custom-columns=N:.metadata.name",
            "--no-headers"
        ])
        .trim(),
        "cm1"
    );
    kc.ok(&["-n", "acc", "annotate", "cm", "cm1", "note=hello"]);
    kc.ok(&[
        "-n",
        "acc",
        "patch",
        "cm",
        "cm1",
        "--type=merge",
        "-p",
        r#"{"data":{"c":"3"}}"#,
    ]);
    kc.ok(&[
        "-n",
        "acc",
        "patch",
        "cm",
        "cm1",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/data/b"}]"#,
    ]);
    assert_eq!(
        kc.ok(&[
            "-n",
            "acc",
            "get",
            "cm",
            "cm1",
            "-o",
            "jsonpath=a={.data.a} b={.data.b} c={.data.c}"
        ]),
        "a=1 b= c=3"
    );
    assert_eq!(
        kc.ok(&[
            "-n",
            "acc",
            "get",
            "cm",
            "--field-selector",
            "metadata.name=cm1",
            "-o",
            "custom-columns=N:.metadata.name",
            "--no-headers"
        ])
        .trim(),
        "cm1"
    );

    // Optimistic concurrency: replacing a stale copy is a conflict.
    let stale = kc.ok(&["-n", "acc", "get", "cm", "cm1", "-o", "json"]);
    kc.ok(&["-n", "acc", "label", "cm", "cm1", "bump=1"]);
    let o = kc.apply_stdin(&["replace", "-f", "-"], &stale);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the object has been modified"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn validation_and_errors_are_upstream_statuses() {
    let s = Server::start(&[]);
    let kc = Kc::new(&s);
    kc.ok(&["create", "namespace", "acc"]);
    let o = kc.apply_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: badfield, namespace: acc}\ndata: {a: \"1\"}\nbogus: true\n");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown field \"bogus\""),
        "{}",
        stderr(&o)
    );
    let o = kc.apply_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata: {name: nocontainers, namespace: acc}\nspec: {containers: []}\n");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("spec.containers: Required value"),
        "{}",
        stderr(&o)
    );
    let e = kc.fails(&["-n", "acc", "get", "cm", "absent"]);
    assert!(e.contains("configmaps \"absent\" not found"), "{e}");
    // Dry run stores nothing.
    kc.ok(&[
        "-n",
        "acc",
        "create",
        "configmap",
        "ghost",
        "--from-literal=x=y",
        "--dry-run=server",
    ]);
    assert!(
        kc.fails(&["-n", "acc", "get", "cm", "ghost"])
            .contains("not found")
    );

    // Raw requests: malformed JSON, oversized body, anonymous.
    let tls = s.data_dir().join("server/tls");
    let post = |body: &str| {
        curl(
            &s,
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
                "/api/v1/namespaces/acc/configmaps",
            ],
            &tls,
        )
    };
    let (code, body) = post(r#"{"apiVersion":"v1","kind":"ConfigMap","#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"kind\":\"Status\""), "{body}");
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#,
        "a".repeat(3_000_000)
    );
    let path = s.dir.path().join("big.json");
    std::fs::write(&path, big).unwrap();
    let (code, _) = post(&format!("@{}", path.display()));
    assert!((400..500).contains(&code), "oversized body answered {code}");
    assert!(
        kc.fails(&["-n", "acc", "get", "cm", "big"])
            .contains("not found"),
        "nothing half-stored"
    );
    assert_eq!(s.get_anonymous("/api/v1/namespaces").unwrap().0, 401);
}

fn curl(s: &Server, args: &[&str], tls: &std::path::Path) -> (u16, String) {
    let out_file = s.dir.path().join("curl.out");
    let mut cmd = Command::new("curl");
    cmd.arg("-sS")
        .arg("--cacert")
        .arg(tls.join("server-ca.crt"))
        .arg("--cert")
        .arg(tls.join("client-admin.crt"))
        .arg("--key")
        .arg(tls.join("client-admin.key"))
        .arg("-o")
        .arg(&out_file)
        .arg("-w")
        .arg("%{http_code}");
    let (last, rest) = args.split_last().unwrap();
    cmd.args(rest)
        .arg(format!("https://127.0.0.1:{}{last}", s.port));
    let o = cmd.output().unwrap();
    let code = stdout(&o).trim().parse().unwrap_or(0);
    (code, std::fs::read_to_string(&out_file).unwrap_or_default())
}

#[test]
fn server_side_apply_owns_fields() {
    let s = Server::start(&[]);
    let kc = Kc::new(&s);
    kc.ok(&["create", "namespace", "acc"]);
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: acc}\ndata: {owner: first}\n";
    let o = kc.apply_stdin(
        &["apply", "--server-side", "--field-manager=first", "-f", "-"],
        cm,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let second = cm.replace("owner: first", "owner: second");
    let o = kc.apply_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=second",
            "-f",
            "-",
        ],
        &second,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("conflict"), "{}", stderr(&o));
    let o = kc.apply_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=second",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &second,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        kc.ok(&[
            "-n",
            "acc",
            "get",
            "cm",
            "ssa",
            "-o",
            "yaml",
            "--show-managed-fields"
        ])
        .contains("manager: second")
    );
}

#[test]
fn lifecycle_generate_name_finalizers_and_deletion() {
    let s = Server::start(&[]);
    let kc = Kc::new(&s);
    kc.ok(&["create", "namespace", "acc"]);
    let o = kc.apply_stdin(&["create", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: gen-, namespace: acc}\ndata: {x: \"1\"}\n");
    let out = stdout(&o);
    assert!(
        out.starts_with("configmap/gen-")
            && out.trim().ends_with("created")
            && out.trim().len() == "configmap/gen-xxxxx created".len(),
        "{out}{}",
        stderr(&o)
    );
    let o = kc.apply_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fin, namespace: acc, finalizers: [example.com/hold]}\n");
    assert!(o.status.success(), "{}", stderr(&o));
    kc.ok(&["-n", "acc", "delete", "cm", "fin", "--wait=false"]);
    let ts = kc.ok(&[
        "-n",
        "acc",
        "get",
        "cm",
        "fin",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(ts.len() == 20 && ts.ends_with('Z'), "{ts}");
    kc.ok(&[
        "-n",
        "acc",
        "patch",
        "cm",
        "fin",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(
        kc.fails(&["-n", "acc", "get", "cm", "fin"])
            .contains("not found")
    );

    let o = kc.apply_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata: {name: lonely, namespace: acc}\nspec:\n  containers: [{name: c, image: busybox:acc, command: [sleep, \"1000\"]}]\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let wide = kc.ok(&["-n", "acc", "get", "pod", "lonely", "-o", "wide"]);
    assert!(
        wide.split_whitespace().take(7).collect::<Vec<_>>()
            == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"],
        "{wide}"
    );
    assert!(
        kc.ok(&["-n", "acc", "get", "pod", "lonely"])
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            == ["lonely", "0/1", "Pending"]
    );
    assert_eq!(kc.ok(&["-n", "acc", "get", "pod", "lonely", "-o", "jsonpath={.spec.serviceAccountName} {.spec.restartPolicy} {.spec.terminationGracePeriodSeconds}"]), "default Always 30");

    kc.ok(&[
        "-n",
        "acc",
        "create",
        "configmap",
        "cm1",
        "--from-literal=a=1",
    ]);
    assert!(
        kc.ok(&["-n", "acc", "delete", "cm", "cm1"])
            .contains("configmap \"cm1\" deleted")
    );
    kc.ok(&["delete", "ns", "acc", "--wait=false"]);
    let phase = kc.run(&["get", "ns", "acc", "-o", "jsonpath={.status.phase}"]);
    assert!(
        stdout(&phase) == "Terminating" || stderr(&phase).contains("not found"),
        "{}",
        stdout(&phase)
    );
}

#[test]
fn services_get_unique_cluster_ips_and_node_ports() {
    let s = Server::start(&[]);
    let kc = Kc::new(&s);
    kc.ok(&["create", "namespace", "acc"]);
    kc.ok(&[
        "-n",
        "acc",
        "create",
        "service",
        "clusterip",
        "svc1",
        "--tcp=80:8080",
    ]);
    let ip = kc.ok(&[
        "-n",
        "acc",
        "get",
        "svc",
        "svc1",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert!(ip.starts_with("10.43.") && ip != "10.43.0.1", "{ip}");
    kc.ok(&[
        "-n",
        "acc",
        "create",
        "service",
        "nodeport",
        "svc2",
        "--tcp=80:8080",
    ]);
    let np = kc.ok(&[
        "-n",
        "acc",
        "get",
        "svc",
        "svc2",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let port: u16 = np.parse().unwrap();
    assert!((30000..=32767).contains(&port), "{port}");
    let e = kc.fails(&[
        "-n",
        "acc",
        "create",
        "service",
        "nodeport",
        "svc3",
        "--tcp=81:8080",
        &format!("--node-port={port}"),
    ]);
    assert!(e.contains("already allocated"), "{e}");
    // Deleting frees the port for reuse.
    kc.ok(&["-n", "acc", "delete", "svc", "svc2"]);
    kc.ok(&[
        "-n",
        "acc",
        "create",
        "service",
        "nodeport",
        "svc3",
        "--tcp=81:8080",
        &format!("--node-port={port}"),
    ]);
}

#[test]
fn watch_and_chunked_lists() {
    let s = Server::start(&[]);
    let kc = Kc::new(&s);
    kc.ok(&["create", "namespace", "acc"]);
    let mut watch = kc
        .cmd(&["-n", "acc", "get", "cm", "-w", "--request-timeout=0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    kc.ok(&[
        "-n",
        "acc",
        "create",
        "configmap",
        "watched",
        "--from-literal=a=1",
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    assert!(
        stdout(&out).lines().any(|l| l.starts_with("watched ")),
        "{}",
        stdout(&out)
    );
    for i in 0..25 {
        kc.ok(&[
            "-n",
            "acc",
            "create",
            "configmap",
            &format!("bulk-{i}"),
            &format!("--from-literal=i={i}"),
        ]);
    }
    let chunked = kc.ok(&["-n", "acc", "get", "cm", "--chunk-size=4", "--no-headers"]);
    assert_eq!(
        chunked.lines().filter(|l| l.starts_with("bulk-")).count(),
        25
    );
    let raw = kc.ok(&["get", "--raw", "/api/v1/namespaces/acc/configmaps?limit=5"]);
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 5);
    assert!(
        v["metadata"]["continue"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{raw}"
    );
}

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, default: blue}
          status:
            type: object
            properties:
              ready: {type: boolean}
"#;

#[test]
fn custom_resources_are_served_validated_and_removed() {
    let s = Server::start(&[]);
    let kc = Kc::new(&s);
    kc.ok(&["create", "namespace", "acc"]);
    let o = kc.apply_stdin(&["apply", "-f", "-"], CRD);
    assert!(o.status.success(), "{}", stderr(&o));
    kc.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ]);
    let w = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: acc}\nspec: {size: 3}\n";
    let o = kc.apply_stdin(&["apply", "-f", "-"], w);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = kc.ok(&["-n", "acc", "get", "widgets"]);
    assert!(
        table.split_whitespace().take(3).collect::<Vec<_>>() == ["NAME", "SIZE", "AGE"],
        "{table}"
    );
    assert!(
        kc.ok(&["-n", "acc", "get", "wg", "--no-headers"])
            .starts_with("w1 ")
    );
    assert_eq!(
        kc.ok(&[
            "-n",
            "acc",
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.spec.color}"
        ]),
        "blue"
    );
    let o = kc.apply_stdin(&["apply", "-f", "-"], &w.replace("size: 3", "size: 0"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("greater than or equal to 1"),
        "{}",
        stderr(&o)
    );
    kc.ok(&[
        "-n",
        "acc",
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":true}}"#,
    ]);
    assert_eq!(
        kc.ok(&[
            "-n",
            "acc",
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.status.ready}"
        ]),
        ""
    );
    kc.ok(&["delete", "crd", "widgets.example.com"]);
    assert!(eventually(Duration::from_secs(15), || !kc
        .run(&["-n", "acc", "get", "widgets"])
        .status
        .success()));
}

#[test]
fn objects_survive_a_restart() {
    let mut s = Server::start(&[]);
    {
        let kc = Kc::new(&s);
        kc.ok(&["create", "namespace", "keep"]);
        kc.ok(&[
            "-n",
            "keep",
            "create",
            "configmap",
            "c",
            "--from-literal=a=1",
        ]);
        kc.ok(&[
            "-n",
            "keep",
            "create",
            "service",
            "nodeport",
            "np",
            "--tcp=80:8080",
        ]);
    }
    let port_before = Kc::new(&s).ok(&[
        "-n",
        "keep",
        "get",
        "svc",
        "np",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort}",
    ]);
    assert!(s.terminate().success());
    s.spawn(&[]);
    let kc = Kc::new(&s);
    assert_eq!(
        kc.ok(&["-n", "keep", "get", "cm", "c", "-o", "jsonpath={.data.a}"]),
        "1"
    );
    assert_eq!(
        kc.ok(&[
            "-n",
            "keep",
            "get",
            "svc",
            "np",
            "-o",
            "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort}"
        ]),
        port_before
    );
    // The allocation survived too: the same node port cannot be taken again.
    let np = port_before.split_whitespace().nth(1).unwrap();
    assert!(
        kc.fails(&[
            "-n",
            "keep",
            "create",
            "service",
            "nodeport",
            "np2",
            "--tcp=81:8080",
            &format!("--node-port={np}")
        ])
        .contains("already allocated")
    );
}
