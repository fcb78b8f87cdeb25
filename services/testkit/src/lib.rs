//! Test infrastructure shared by the broker's and the binary's tests: `RedisServer` starts a
//! throwaway `redis-server` on a free loopback port, as a child process killed on drop. It
//! never uses a Redis the machine already runs. When `redis-server` is missing it is
//! installed with apt-get (as root), as xtask does for PostgreSQL. `RedisCluster` starts
//! three of them as a Redis Cluster.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// A running `redis-server` that nothing else uses, without persistence.
pub struct RedisServer {
    child: Child,
    port: u16,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one and returns once it accepts connections (it says so on stdout).
    ///
    /// # Panics
    /// When `redis-server` is missing and cannot be installed, or does not start: a test
    /// without its Redis cannot run.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// As `start`, with more `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|arg| (*arg).to_owned()).collect();
        let port = free_port();
        let child = spawn(port, &extra);
        Self { child, port, extra }
    }

    /// Stops the server (its data goes with it), as a Redis outage would.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again, empty, on the same port; returns once it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(self.port, &self.extra);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `redis-server` on `port` until it says it accepts connections.
fn spawn(port: u16, extra: &[String]) -> Child {
    let program = redis_server().unwrap_or_else(|error| panic!("{error}"));
    let mut child = Command::new(program)
        .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--daemonize", "no"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-server starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("Ready to accept connections"));
    assert!(
        ready,
        "redis-server on port {port} exited before it was ready"
    );
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// A port that was free a moment ago (the kernel hands out ports in sequence, so another
/// test is unlikely to take it before redis-server binds it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The `redis-server` program, installed once per test binary when missing.
fn redis_server() -> Result<PathBuf, String> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(found) = find("redis-server") {
                return Ok(found);
            }
            install()?;
            find("redis-server").ok_or_else(|| "redis-server is still missing".to_owned())
        })
        .clone()
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn install() -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if !root {
        return Err("redis-server is missing: install Debian's `redis-server` package".into());
    }
    eprintln!("installing redis-server (Debian package redis-server)");
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "redis-server"][..],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|error| format!("apt-get: {error}"))?;
        if !status.success() {
            return Err(format!("apt-get {} failed: {status}", args.join(" ")));
        }
    }
    Ok(())
}

/// A throwaway three-master Redis Cluster (`--cluster-enabled yes`, slots spread by
/// `redis-cli --cluster create`), its servers killed and its directory removed on drop.
pub struct RedisCluster {
    servers: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    /// # Panics
    /// When the servers do not start or the cluster cannot be created.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "testkit-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the cluster's node files");
        let servers: Vec<RedisServer> = (0..3)
            .map(|n| {
                let nodes = dir.join(format!("nodes-{n}.conf"));
                // Its own bus port: the default, the node's port + 10,000, is past 65,535
                // for a node port above 55,535, which the kernel's free ports often are.
                let bus_port = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    nodes.to_str().expect("a UTF-8 temp dir"),
                    "--cluster-port",
                    &bus_port,
                ])
            })
            .collect();
        let addresses: Vec<String> = servers
            .iter()
            .map(|server| format!("127.0.0.1:{}", server.port()))
            .collect();
        let redis_cli = redis_server()
            .map(|server| server.with_file_name("redis-cli"))
            .unwrap_or_else(|error| panic!("{error}"));
        // `--cluster create` returns once every node agrees on the slots.
        let created = Command::new(redis_cli)
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        Self { servers, dir }
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .servers
            .iter()
            .map(|server| format!("127.0.0.1:{}", server.port()))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.servers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
