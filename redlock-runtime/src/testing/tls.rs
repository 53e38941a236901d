//! TLS: a throwaway CA, certificates signed by it, and `redis-server` on a TLS port.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::{free_port, RedisServer, ServerError, ServerOptions, PORT_ATTEMPTS};

/// A test CA and a server and client certificate signed by it (EC P-256, valid for two days),
/// generated with the `openssl` command-line tool in a temp dir removed on drop.
///
/// The server certificate is for `127.0.0.1` and `localhost`.
#[derive(Debug)]
pub struct TestCertificates {
    dir: TempDir,
}

impl TestCertificates {
    /// Generates the CA and the certificates. Needs `openssl` on `PATH`.
    pub fn generate() -> Result<TestCertificates, ServerError> {
        let dir = tempfile::Builder::new()
            .prefix("redlock-tls-")
            .tempdir()
            .map_err(|e| ServerError::io("creating a temp dir for certificates", e))?;
        let certs = TestCertificates { dir };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        certs.openssl(
            &[
                &["req", "-x509", "-new"],
                &ec[..],
                &["-keyout", "ca.key", "-out", "ca.crt"],
            ],
            &["-days", "2", "-subj", "/CN=redlock test CA"],
        )?;
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            let ext = format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
                 extendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
            );
            fs::write(certs.dir.path().join(format!("{name}.ext")), ext)
                .map_err(|e| ServerError::io("writing a certificate extension file", e))?;
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let crt = format!("{name}.crt");
            let ext = format!("{name}.ext");
            let subject = format!("/CN=redlock test {name}");
            certs.openssl(
                &[&["req", "-new"], &ec[..], &["-keyout", &key, "-out", &csr]],
                &["-subj", &subject],
            )?;
            certs.openssl(
                &[&[
                    "x509", "-req", "-in", &csr, "-CA", "ca.crt", "-CAkey", "ca.key",
                ]],
                &[
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-out",
                    &crt,
                    "-extfile",
                    &ext,
                ],
            )?;
        }
        Ok(certs)
    }

    fn openssl(&self, parts: &[&[&str]], tail: &[&str]) -> Result<(), ServerError> {
        let args: Vec<&str> = parts
            .iter()
            .flat_map(|p| p.iter().copied())
            .chain(tail.iter().copied())
            .collect();
        let output = Command::new("openssl")
            .args(&args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ServerError::io(
                    "`openssl` not found: TLS tests generate their certificates with it \
                     (apt-get install openssl)",
                    e,
                ),
                _ => ServerError::io("running openssl", e),
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(ServerError::Reply(format!(
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }

    /// The directory holding `ca.crt`, `server.crt`, `server.key`, `client.crt`, `client.key`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of a file in [`dir`](Self::dir).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate (PEM), to trust in clients.
    pub fn ca_pem(&self) -> Vec<u8> {
        fs::read(self.path("ca.crt")).unwrap_or_default()
    }

    /// The client certificate (PEM), for mutual TLS.
    pub fn client_cert_pem(&self) -> Vec<u8> {
        fs::read(self.path("client.crt")).unwrap_or_default()
    }

    /// The client key (PEM, PKCS#8), for mutual TLS.
    pub fn client_key_pem(&self) -> Vec<u8> {
        fs::read(self.path("client.key")).unwrap_or_default()
    }
}

/// A `redis-server` that accepts clients over TLS only (`--tls-port`, no plain TCP port),
/// with certificates from a fresh [`TestCertificates`]. The test harness itself talks to it
/// over a unix socket ([`server`](Self::server)).
#[derive(Debug)]
pub struct TlsRedisServer {
    server: RedisServer,
    tls_port: u16,
    certs: TestCertificates,
}

impl TlsRedisServer {
    /// Starts a TLS server with extra `options` (password, ACL arguments...); with
    /// `require_client_certificates` clients must present a certificate signed by the test CA.
    pub fn spawn(
        options: ServerOptions,
        require_client_certificates: bool,
    ) -> Result<TlsRedisServer, ServerError> {
        let certs = TestCertificates::generate()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tls_port = free_port()?;
            let path = |name: &str| certs.path(name).to_string_lossy().into_owned();
            let auth = if require_client_certificates {
                "yes"
            } else {
                "no"
            };
            let options = options
                .clone()
                .unix_socket(true)
                .arg("--tls-port")
                .arg(tls_port.to_string())
                .arg("--tls-cert-file")
                .arg(path("server.crt"))
                .arg("--tls-key-file")
                .arg(path("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(path("ca.crt"))
                .arg("--tls-auth-clients")
                .arg(auth);
            match RedisServer::spawn_with(options) {
                Ok(server) => {
                    return Ok(TlsRedisServer {
                        server,
                        tls_port,
                        certs,
                    })
                }
                Err(e) if e.is_addr_in_use() && attempt < PORT_ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// `rediss://127.0.0.1:PORT`.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port)
    }

    /// `rediss://USER:PASSWORD@127.0.0.1:PORT` (percent-encoded).
    pub fn tls_url_as(&self, user: &str, password: &str) -> String {
        format!(
            "rediss://{}:{}@127.0.0.1:{}",
            super::percent_encode(user, false),
            super::percent_encode(password, false),
            self.tls_port
        )
    }

    /// The TLS port.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// The server (unix socket control channel, stop / restart / pause).
    pub fn server(&self) -> &RedisServer {
        &self.server
    }

    /// The certificates the server uses.
    pub fn certificates(&self) -> &TestCertificates {
        &self.certs
    }
}
