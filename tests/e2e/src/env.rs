//! The local test environment's env file and the clients built from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Variables of the running test environment (addresses, CA files, tokens).
#[derive(Debug)]
pub struct TestEnv {
    path: PathBuf,
    vars: BTreeMap<String, String>,
}

static ENV: OnceLock<TestEnv> = OnceLock::new();

/// The running test environment; panics with instructions when it is not running.
pub fn test_env() -> &'static TestEnv {
    ENV.get_or_init(|| {
        // Same provider as the lockstep binary; a second call is harmless.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        TestEnv::load().unwrap_or_else(|msg| panic!("{msg}"))
    })
}

fn default_env_path() -> PathBuf {
    let cache = std::env::var_os("LOCKSTEP_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("lockstep")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lockstep")))
        .unwrap_or_else(|| PathBuf::from(".cache/lockstep"));
    cache.join("testenv/current.env")
}

impl TestEnv {
    /// The environment whose env file is `path`: a second environment a test starts itself.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the env file {}: {e}", path.display()))?;
        Ok(Self {
            vars: parse_env_file(&text),
            path: path.to_owned(),
        })
    }

    fn load() -> Result<Self, String> {
        let path = std::env::var_os("LOCKSTEP_TESTENV")
            .map(PathBuf::from)
            .unwrap_or_else(default_env_path);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "the local test environment is not running: cannot read its env file {} ({e}).\n\
                 Run the whole suite with `scripts/test`, or start the environment with \
                 `testenv/testenv.py up` and run `cargo test` again.",
                path.display()
            )
        })?;
        Ok(Self {
            vars: parse_env_file(&text),
            path,
        })
    }

    /// A variable of the environment; panics naming the env file when it is missing.
    pub fn var(&self, key: &str) -> &str {
        self.vars.get(key).map(String::as_str).unwrap_or_else(|| {
            panic!(
                "{key} is missing from the test environment's env file {}",
                self.path.display()
            )
        })
    }

    /// A path-valued variable.
    pub fn path(&self, key: &str) -> &Path {
        Path::new(self.var(key))
    }

    /// A client authenticated as the cluster admin (system:masters).
    pub async fn admin_client(&self) -> Client {
        self.client_from_kubeconfig(self.path("KUBECONFIG")).await
    }

    /// A client authenticated as the restricted user, who has only the RBAC a test grants.
    pub async fn restricted_client(&self) -> Client {
        self.client_from_kubeconfig(self.path("LOCKSTEP_RESTRICTED_KUBECONFIG"))
            .await
    }

    /// A client configured by `config` (for example, with client-certificate authentication).
    pub fn client_with(&self, config: Config) -> Client {
        Client::try_from(config).expect("a kube client from the test environment's config")
    }

    /// The admin kubeconfig as a client `Config`, for tests that change its authentication.
    pub async fn admin_config(&self) -> Config {
        let kubeconfig = Kubeconfig::read_from(self.path("KUBECONFIG")).expect("admin kubeconfig");
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("a client config from the admin kubeconfig")
    }

    async fn client_from_kubeconfig(&self, path: &Path) -> Client {
        let kubeconfig = Kubeconfig::read_from(path)
            .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()));
        self.client_with(config)
    }

    /// An HTTP client that trusts OpenBao's CA (and only the system roots besides).
    pub fn openbao_http(&self) -> reqwest::Client {
        let pem = std::fs::read(self.path("BAO_CACERT")).expect("OpenBao's CA file");
        let cert = reqwest::Certificate::from_pem(&pem).expect("OpenBao's CA certificate");
        reqwest::Client::builder()
            .tls_certs_only([cert])
            .build()
            .expect("an HTTP client for OpenBao")
    }
}

/// Parses `KEY=value` lines, where a value may be single-quoted as a POSIX shell would.
fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), unquote(v)))
        .collect()
}

fn unquote(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None | Some('"'), '\\') => out.extend(chars.next()),
            (_, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_values_are_unquoted_as_a_shell_would() {
        let vars = parse_env_file("A=plain\nB='it'\"'\"'s here'\nC='x y'\n");
        assert_eq!(vars["A"], "plain");
        assert_eq!(vars["B"], "it's here");
        assert_eq!(vars["C"], "x y");
    }
}
