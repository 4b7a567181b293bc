//! The real services the integration tests run against, each started by the test on free
//! loopback ports where it needs its own (and stopped when dropped): a Kafka-protocol broker
//! (tansu, in-memory storage), an S3 server (s3s-fs over a temp folder), a private ClickHouse
//! (for outages); and the shared ClickHouse that tests/services/start.sh runs. They are installed
//! by tests/services/install.sh (tests/run.sh does it).
//!
//! Tests that need them are marked `#[ignore = "needs ..."]`: a plain `cargo test` lists them as
//! ignored; tests/run.sh runs them with `--include-ignored` after starting the services.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use super::{repo, wait_for};

pub struct Broker {
    child: Child,
    pub address: String,
    /// sqlite storage (brokers that restart), else in memory.
    storage: Option<tempfile::TempDir>,
    /// Clients must log in (SASL/SCRAM).
    authentication: bool,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker of the test's own, on a free port, keeping its data in memory.
pub fn broker() -> Broker {
    let address = format!("127.0.0.1:{}", free_port());
    let child = start_tansu(&address, "memory://tansu/", None, false);
    Broker {
        child,
        address,
        storage: None,
        authentication: false,
    }
}

/// A broker keeping its data in a sqlite file, so that it can restart on the same data.
pub fn broker_on_disk() -> Broker {
    let address = format!("127.0.0.1:{}", free_port());
    let storage = tempfile::tempdir().unwrap();
    let child = start_tansu(&address, "sqlite://tansu.db", Some(storage.path()), false);
    Broker {
        child,
        address,
        storage: Some(storage),
        authentication: false,
    }
}

/// A broker on disk that requires SASL/SCRAM-SHA-512 logins, with one user. (tansu keeps users
/// in its storage and creates them through the Kafka API, which needs no login while
/// authentication is off: the user is created first, then the broker restarts with it on.)
pub fn broker_with_user(user: &str, password: &str) -> Broker {
    let mut broker = broker_on_disk();
    let status = Command::new("tansu")
        .args(["user", "create", user, password, "--mechanism", "scram512"])
        .args(["--broker", &format!("tcp://{}", broker.address)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "tansu user create");
    broker.stop();
    broker.authentication = true;
    broker.back();
    broker
}

/// tansu on `address`; a sqlite path is relative to `cwd`.
fn start_tansu(
    address: &str,
    storage: &str,
    cwd: Option<&std::path::Path>,
    authentication: bool,
) -> Child {
    let mut cmd = Command::new("tansu");
    cmd.args(["broker", "--listener-url", &format!("tcp://{address}")])
        .args(["--advertised-listener-url", &format!("tcp://{address}")])
        .args(["--storage-engine", storage, "--silent"])
        .stdout(Stdio::null())
        .stderr(tansu_log(address));
    if authentication {
        cmd.arg("--authentication");
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let child = cmd
        .spawn()
        .expect("tansu is installed by tests/services/install.sh kafka");
    assert!(
        wait_for(30, || std::net::TcpStream::connect(address).is_ok()),
        "tansu did not start"
    );
    child
}

/// Where a tansu keeps what it prints (a panic, when it dies on its own): appended across
/// restarts, one file per address.
pub fn tansu_log_path(address: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "shelfstream-tansu-{}.log",
        address.replace(':', "-")
    ))
}

fn tansu_log(address: &str) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(tansu_log_path(address))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

impl Broker {
    /// How the broker ended, when it did without [`Broker::stop`] (a crash of tansu's own).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Stop the broker (SIGKILL: whatever it had acknowledged is in its sqlite file).
    pub fn stop(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Start it again on the same address and data (a broker made by [`broker_on_disk`]).
    pub fn back(&mut self) {
        let dir = self.storage.as_ref().expect("a broker on disk").path();
        self.child = start_tansu(
            &self.address,
            "sqlite://tansu.db",
            Some(dir),
            self.authentication,
        );
    }
}

/// s3s-fs on a free port over a temp folder, with bucket `retail-data`.
pub struct S3 {
    child: Child,
    pub endpoint: String,
    pub dir: tempfile::TempDir,
    keys: [String; 2],
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn s3() -> S3 {
    s3_with_keys("minioadmin", "minioadmin")
}

/// The same with other credentials.
pub fn s3_with_keys(access_key: &str, secret_key: &str) -> S3 {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("retail-data")).unwrap();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let keys = [access_key.to_string(), secret_key.to_string()];
    let child = start_s3s(dir.path(), port, &keys);
    S3 {
        child,
        endpoint,
        dir,
        keys,
    }
}

fn start_s3s(dir: &std::path::Path, port: u16, [access, secret]: &[String; 2]) -> Child {
    let child = Command::new("s3s-fs")
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", access, "--secret-key", secret])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs is installed by tests/services/install.sh s3");
    let address = format!("127.0.0.1:{port}");
    assert!(
        wait_for(30, || std::net::TcpStream::connect(&address).is_ok()),
        "s3s-fs did not start"
    );
    child
}

impl S3 {
    /// An outage: the server is gone until `back` is called.
    pub fn stop(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn back(&mut self) {
        let port: u16 = self.endpoint.rsplit(':').next().unwrap().parse().unwrap();
        self.child = start_s3s(self.dir.path(), port, &self.keys);
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A ClickHouse server of the test's own (tests/services/clickhouse-instance.sh on free ports),
/// so that it can be stopped without disturbing other tests.
pub struct PrivateClickHouse {
    child: Child,
    dir: tempfile::TempDir,
    ports: [u16; 3],
    /// `name:password` of one more user, if any.
    user: Option<String>,
    pub url: String,
}

pub fn private_clickhouse() -> PrivateClickHouse {
    private_clickhouse_with(None)
}

/// A private ClickHouse with one more user, `name`, whose password is `password`.
pub fn private_clickhouse_with_user(name: &str, password: &str) -> PrivateClickHouse {
    private_clickhouse_with(Some(format!("{name}:{password}")))
}

fn private_clickhouse_with(user: Option<String>) -> PrivateClickHouse {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let child = start_clickhouse(dir.path(), ports, user.as_deref());
    PrivateClickHouse {
        child,
        url: format!("http://127.0.0.1:{}", ports[0]),
        dir,
        ports,
        user,
    }
}

fn start_clickhouse(dir: &std::path::Path, ports: [u16; 3], user: Option<&str>) -> Child {
    let mut command = Command::new(repo().join("tests/services/clickhouse-instance.sh"));
    if let Some(user) = user {
        command.env("CLICKHOUSE_USER", user);
    }
    let child = command
        .arg(dir)
        .args(ports.map(|p| p.to_string()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tests/services/install.sh clickhouse installs the server");
    let url = format!("http://127.0.0.1:{}", ports[0]);
    let ping =
        || try_query(&url, "default", "SELECT version()").is_some_and(|v| v.starts_with("18."));
    assert!(
        wait_for(60, ping),
        "the private ClickHouse did not start (logs in {})",
        dir.display()
    );
    child
}

impl PrivateClickHouse {
    /// `count()` of a table; `None` while the server or the table is not there.
    pub fn rows(&self, database: &str, table: &str) -> Option<u64> {
        try_query(&self.url, database, &format!("SELECT count() FROM {table}"))?
            .parse()
            .ok()
    }

    pub fn stop(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn back(&mut self) {
        self.child = start_clickhouse(self.dir.path(), self.ports, self.user.as_deref());
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ClickHouse that tests/services/start.sh runs (`SHELFSTREAM_CLICKHOUSE_URL` elsewhere).
pub fn shared_clickhouse() -> String {
    std::env::var("SHELFSTREAM_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// A query's TabSeparated answer from the shared ClickHouse.
pub fn clickhouse_query(database: &str, sql: &str) -> String {
    clickhouse_query_at(&shared_clickhouse(), database, sql)
}

/// A query's TabSeparated answer (the `clickhouse` crate's client, as the sink uses).
pub fn clickhouse_query_at(url: &str, database: &str, sql: &str) -> String {
    run_query(url, database, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `None` while the server does not answer.
fn try_query(url: &str, database: &str, sql: &str) -> Option<String> {
    run_query(url, database, sql).ok()
}

fn run_query(url: &str, database: &str, sql: &str) -> Result<String, clickhouse::error::Error> {
    let ch = shelfstream::sinks::clickhouse::ClickHouseConfig {
        url: url.to_string(),
        database: database.into(),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cursor = ch
            .client()
            .with_database(database)
            .query(sql)
            .fetch_bytes("TabSeparated")?;
        let bytes = cursor.collect().await?;
        Ok(String::from_utf8_lossy(&bytes).trim().to_string())
    })
}
