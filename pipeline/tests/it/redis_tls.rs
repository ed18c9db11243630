//! `rediss://`: a Redis that speaks only TLS (as managed Redis services do),
//! reached by the real binary with the server's CA in `SSL_CERT_FILE`.

use std::net::TcpListener;
use std::process::{Command, Stdio};

const CONFIG: &str = r#"
[[providers]]
name = "orion"
kind = "orion"
priority = 10
max_requests_per_hour = 100
base_url = "http://127.0.0.1:9"
api_key_env = "ORION_API_KEY"
"#;

/// Kills the server when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn rediss_reaches_a_redis_that_speaks_only_tls() {
    let dir = tempfile::tempdir().unwrap();
    // A CA of the test's own, and the server's certificate signed by it.
    let (ca, cert) = (dir.path().join("ca.pem"), dir.path().join("cert.pem"));
    let key = dir.path().join("key.pem");
    let openssl = |args: &[&str]| {
        let made = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(made.success(), "openssl {args:?}");
    };
    openssl(
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ]
        .into_iter()
        .chain([
            "-subj",
            "/CN=leadflow-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ])
        .collect::<Vec<_>>(),
    );
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.path().join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        "cert.pem",
        "-extfile",
        "ext.cnf",
    ]);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Server(
        Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--save", ""])
            .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&ca)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/test.sh installs it)"),
    );
    for tries in 0.. {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(tries < 400, "redis-server with TLS did not start");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let config = dir.path().join("leadflow.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let status = |url: &str, ca: Option<&std::path::Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_leadflow"));
        cmd.args(["status", "--config"])
            .arg(&config)
            .args(["--redis", url])
            .env_remove("REDIS_URL")
            .env("ORION_API_KEY", "orion-test-key-0001");
        match ca {
            Some(ca) => cmd.env("SSL_CERT_FILE", ca),
            None => cmd.env_remove("SSL_CERT_FILE"),
        };
        cmd.output().unwrap()
    };

    let url = format!("rediss://localhost:{port}");
    let read = status(&url, Some(&ca));
    let stdout = String::from_utf8_lossy(&read.stdout);
    let stderr = String::from_utf8_lossy(&read.stderr);
    assert!(read.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("orion"), "{stdout}");

    // A server whose certificate nobody vouches for is not talked to.
    let untrusted = status(&url, None);
    assert!(!untrusted.status.success());
}
