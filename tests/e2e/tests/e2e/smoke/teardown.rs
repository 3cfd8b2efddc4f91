//! The environment cleans up after itself even when its supervisor is killed outright: a second
//! environment is started with `testenv.py run`, a pod runs on its node, the supervisor gets
//! SIGKILL, and `testenv.py clean` (what `down` and every start run) leaves no process,
//! container, cgroup, mount, network namespace, veth or state folder behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use lockstep_e2e::node::{app_pod_spec, wait_for_phase};
use lockstep_e2e::{TestEnv, eventually, unique_name};
use serde_json::{Value, json};

/// How long a second environment may take to start while the rest of the suite runs.
const START_TIMEOUT: Duration = Duration::from_secs(300);

fn testenv_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testenv/testenv.py")
}

/// A running process's start time (in clock ticks since boot), so that a pid the kernel has
/// given to a new process is not taken for the old one. `None` when there is no such process
/// or it has exited and only waits to be reaped (a zombie, state `Z`: the processes of a killed
/// supervisor are reparented to the machine's init, which reaps them in its own time).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Every process in the node's cgroup subtree (pids hierarchy), with its start time.
fn node_processes(cgroup: &str) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from("/sys/fs/cgroup/pids").join(cgroup)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                dirs.push(entry.path());
            }
        }
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
            if let Some(started) = start_time(pid) {
                out.push((pid, started));
            }
        }
    }
    out
}

/// The supervisor's server processes, from its `pids` file (one `pid name` line each).
fn server_processes(state: &Path) -> Vec<(u32, u64, String)> {
    std::fs::read_to_string(state.join("pids"))
        .expect("the supervisor's pids file")
        .lines()
        .filter_map(|line| {
            let (pid, name) = line.split_once(' ')?;
            let pid: u32 = pid.parse().ok()?;
            Some((pid, start_time(pid)?, name.to_owned()))
        })
        .collect()
}

fn mounts() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo")
}

/// Kills the second environment's supervisor and cleans up after it when a test panics
/// before it has done so itself.
struct Supervisor(Child);

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = Command::new("python3")
                .arg(testenv_py())
                .arg("clean")
                .output();
        }
    }
}

/// Starts `testenv.py run` with a command that writes the env file's path to `marker` and
/// sleeps; returns the supervisor, the environment and its env file once it is up.
fn start_second_environment(dir: &Path) -> (Supervisor, TestEnv, PathBuf) {
    let marker = dir.join("env-path");
    let log = File::create(dir.join("supervisor.log")).expect("log file");
    let mut supervisor = Command::new("python3")
        .arg(testenv_py())
        .args(["run", "--", "sh", "-c"])
        .arg("echo \"$LOCKSTEP_TESTENV\" > \"$0.tmp\" && mv \"$0.tmp\" \"$0\" && exec sleep 600")
        .arg(&marker)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("start testenv.py run");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(path) = std::fs::read_to_string(&marker) {
            let path = PathBuf::from(path.trim());
            let env = TestEnv::from_file(&path).expect("the second env file");
            return (Supervisor(supervisor), env, path);
        }
        if let Some(status) = supervisor.try_wait().expect("supervisor status") {
            panic!(
                "the second environment exited with {status} before it was up:\n{}",
                std::fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            let _ = supervisor.kill();
            panic!(
                "the second environment was not up within {START_TIMEOUT:?}:\n{}",
                std::fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test]
async fn a_killed_supervisor_leaves_no_process_container_mount_or_network_after_clean() {
    let dir = std::env::temp_dir().join(unique_name("lockstep-teardown"));
    std::fs::create_dir_all(&dir).expect("a folder for the second environment's log");
    let (mut supervisor, second, env_file) = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || start_second_environment(&dir)
    })
    .await
    .expect("starting the second environment");
    let state = env_file.parent().expect("state folder").to_owned();
    let net: Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("node.json")).expect("the node's node.json"),
    )
    .expect("node.json");
    let netns = net["netns"].as_str().expect("netns").to_owned();
    let host_if = net["host_if"].as_str().expect("host_if").to_owned();
    let cgroup = net["cgroup"].as_str().expect("cgroup").to_owned();
    let netns_path = format!("/run/netns/{netns}");

    // A pod runs on the second node: a container (runc, under a containerd shim).
    let client = second.admin_client().await;
    let pods = Api::<Pod>::namespaced(client, "default");
    let spec = app_pod_spec("exec sleep 3600", json!([]), "Never");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "sleeper"}, "spec": spec}))
        .expect("pod");
    // The default ServiceAccount appears shortly after the namespace controller starts.
    eventually("the pod to be created", Duration::from_secs(60), || async {
        pods.create(&PostParams::default(), &pod).await.ok()
    })
    .await;
    wait_for_phase(&pods, "sleeper", &["Running"]).await;

    let node = node_processes(&cgroup);
    assert!(
        node.iter()
            .any(|(pid, _)| cmdline(*pid).starts_with("sleep 3600")),
        "the pod's container runs in the node's cgroup: {:?}",
        node.iter().map(|(p, _)| cmdline(*p)).collect::<Vec<_>>()
    );
    assert!(
        node.iter()
            .any(|(pid, _)| cmdline(*pid).contains("containerd-shim")),
        "a containerd shim runs in the node's cgroup"
    );
    let servers = server_processes(&state);
    for wanted in ["kube-apiserver", "etcd", "kubelet", "containerd", "openbao"] {
        assert!(
            servers.iter().any(|(_, _, name)| name.contains(wanted)),
            "{wanted} in the pids file: {servers:?}"
        );
    }
    assert!(Path::new(&netns_path).exists());
    assert!(mounts().contains(&netns_path), "the netns bind mount");

    // kill -9: the supervisor can clean nothing up itself.
    supervisor.0.kill().expect("SIGKILL the supervisor");
    supervisor.0.wait().expect("reap the supervisor");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        Path::new(&netns_path).exists() && state.exists(),
        "what the killed supervisor left is there until the cleanup"
    );

    let out = Command::new("python3")
        .arg(testenv_py())
        .arg("clean")
        .output()
        .expect("testenv.py clean");
    assert!(
        out.status.success(),
        "testenv.py clean failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let survivors: Vec<String> = node
        .iter()
        .map(|(pid, started)| (*pid, *started, cmdline(*pid)))
        .chain(servers.iter().map(|(p, s, n)| (*p, *s, n.clone())))
        .filter(|(pid, started, _)| start_time(*pid) == Some(*started))
        .map(|(pid, _, name)| format!("{pid} {name}"))
        .collect();
    assert!(survivors.is_empty(), "processes left: {survivors:?}");
    assert!(!state.exists(), "state folder {} left", state.display());
    assert!(!Path::new(&netns_path).exists(), "network namespace left");
    let mountinfo = mounts();
    assert!(
        !mountinfo.contains(&netns) && !mountinfo.contains(state.to_str().unwrap()),
        "a mount of the second environment left"
    );
    assert!(
        !Path::new("/sys/class/net").join(&host_if).exists(),
        "veth {host_if} left"
    );
    let hierarchies = std::fs::read_dir("/sys/fs/cgroup").expect("cgroup hierarchies");
    for h in hierarchies.flatten() {
        let left = h.path().join(&cgroup);
        assert!(!left.exists(), "cgroup {} left", left.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
