//! The log stream's name: `log_stream_name` with `{hostname}` from the kernel and `{instance_id}` from
//! IMDS (aws-config's IMDSv2 client; the hostname when IMDS is off or does not answer), checked against
//! CloudWatch's rules for stream names.

use std::time::Duration;

use anyhow::anyhow;
use aws_config::SdkConfig;
use aws_config::imds;
use aws_config::provider_config::ProviderConfig;
use aws_smithy_types::error::display::DisplayErrorContext;
use tracing::warn;

/// Most characters of a log stream name.
const MAX_STREAM_NAME: usize = 512;

/// The instance id must come quickly: start-up waits for it. IMDS answers in milliseconds on EC2.
const IMDS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const IMDS_OPERATION_TIMEOUT: Duration = Duration::from_secs(4);
const IMDS_ATTEMPTS: u32 = 2;

/// Who this host is: its hostname and, on EC2, its instance id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub hostname: String,
    pub instance_id: Option<String>,
}

impl Host {
    /// Reads the hostname, and the instance id from IMDS unless it is disabled (off EC2 this costs the
    /// short IMDS timeouts once, at start-up).
    pub async fn discover(sdk: &SdkConfig) -> Host {
        let hostname = hostname();
        let instance_id = if imds_disabled() {
            None
        } else {
            match lookup_instance_id(sdk, None).await {
                Ok(id) => Some(id),
                Err(e) => {
                    warn!(
                        error = %e,
                        hostname = %hostname,
                        "cannot read the instance id from IMDS ({e}); `{{instance_id}}` in `logs.log_stream_name` becomes the hostname (off EC2, set AWS_EC2_METADATA_DISABLED=true to skip the lookup)"
                    );
                    None
                }
            }
        };
        Host {
            hostname,
            instance_id,
        }
    }

    /// A name of this host that stays the same across restarts: the instance id, else the machine id
    /// (`/etc/machine-id`), else the hostname.
    pub fn stable_id(&self) -> String {
        if let Some(id) = &self.instance_id {
            return id.clone();
        }
        match std::fs::read_to_string("/etc/machine-id") {
            Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
            _ => self.hostname.clone(),
        }
    }

    /// `template` with this host's placeholders, checked as a stream name.
    pub fn stream_name(&self, template: &str) -> anyhow::Result<String> {
        let name = expand_stream_name(template, &self.hostname, self.instance_id.as_deref());
        check_stream_name(&name).map_err(|m| {
            anyhow!("`logs.log_stream_name` = {template:?} resolves to {name:?}, {m}")
        })?;
        Ok(name)
    }
}

/// `template` with `{hostname}` replaced by `hostname` and `{instance_id}` by `instance_id` (the hostname
/// when `None`).
pub fn expand_stream_name(template: &str, hostname: &str, instance_id: Option<&str>) -> String {
    template
        .replace("{instance_id}", instance_id.unwrap_or(hostname))
        .replace("{hostname}", hostname)
}

/// CloudWatch's rule for stream names: 1–512 characters, no `:` or `*`.
pub fn check_stream_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_STREAM_NAME {
        return Err(format!(
            "which has {chars} characters (a stream name has 1 to {MAX_STREAM_NAME})"
        ));
    }
    if name.contains([':', '*']) {
        return Err("which contains `:` or `*` (not allowed in a stream name)".to_owned());
    }
    Ok(())
}

/// The kernel's hostname (no libc call: `/proc/sys/kernel/hostname`, then `/etc/hostname`).
pub fn hostname() -> String {
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            let name = text.trim();
            if !name.is_empty() {
                return name.to_owned();
            }
        }
    }
    warn!("cannot read the hostname; using `localhost`");
    "localhost".to_owned()
}

/// Whether `AWS_EC2_METADATA_DISABLED` turns IMDS off (the SDK's own spelling: `true`, any case).
pub(crate) fn imds_disabled() -> bool {
    std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The instance id through aws-config's IMDSv2 client (its endpoint from the standard chain unless
/// `endpoint` is given), with short timeouts.
pub(crate) async fn lookup_instance_id(
    sdk: &SdkConfig,
    endpoint: Option<&str>,
) -> Result<String, String> {
    let mut provider = ProviderConfig::without_region();
    if let Some(http) = sdk.http_client() {
        provider = provider.with_http_client(http);
    }
    if let Some(sleep) = sdk.sleep_impl() {
        provider = provider.with_sleep_impl(sleep);
    }
    let mut builder = imds::Client::builder()
        .configure(&provider)
        .max_attempts(IMDS_ATTEMPTS)
        .connect_timeout(IMDS_CONNECT_TIMEOUT)
        .read_timeout(IMDS_CONNECT_TIMEOUT)
        .operation_timeout(IMDS_OPERATION_TIMEOUT);
    if let Some(endpoint) = endpoint {
        builder = builder
            .endpoint(endpoint)
            .map_err(|e| format!("bad IMDS endpoint {endpoint:?}: {e}"))?;
    }
    let answer = builder
        .build()
        .get("/latest/meta-data/instance-id")
        .await
        .map_err(|e| DisplayErrorContext(&e).to_string())?;
    let id = answer.as_ref().trim();
    if id.is_empty() || check_stream_name(id).is_err() {
        return Err(format!("IMDS answered an unusable instance id {id:?}"));
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn placeholders_expand_and_fall_back_to_the_hostname() {
        assert_eq!(
            expand_stream_name("{instance_id}", "web1", Some("i-0abc")),
            "i-0abc"
        );
        assert_eq!(expand_stream_name("{instance_id}", "web1", None), "web1");
        assert_eq!(
            expand_stream_name("ssh/{hostname}/{instance_id}", "web1", Some("i-1")),
            "ssh/web1/i-1"
        );
        assert_eq!(expand_stream_name("fixed", "web1", None), "fixed");
    }

    #[test]
    fn stream_names_are_checked() {
        assert!(check_stream_name("i-0123456789abcdef0").is_ok());
        assert!(check_stream_name(&"s".repeat(512)).is_ok());
        assert!(check_stream_name(&"s".repeat(513)).is_err());
        assert!(check_stream_name("").is_err());
        assert!(check_stream_name("a:b").is_err());
        assert!(check_stream_name("a*").is_err());
    }

    #[test]
    fn the_hostname_is_read_without_libc() {
        let h = hostname();
        assert!(!h.is_empty() && !h.contains('\n'));
    }

    #[test]
    fn a_template_without_placeholders_is_used_as_is_and_a_bad_one_is_refused() {
        let host = Host {
            hostname: "web1".into(),
            instance_id: None,
        };
        assert_eq!(
            host.stream_name("my-stream").ok().as_deref(),
            Some("my-stream")
        );
        let err = host.stream_name("bad:name").unwrap_err();
        assert!(err.to_string().contains("`logs.log_stream_name`"), "{err}");
    }

    /// A minimal IMDSv2 endpoint: a token for the PUT, the instance id for the GET.
    fn imds_server(instance_id: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(4) {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let (extra, body) = if first.starts_with("PUT") {
                    ("x-aws-ec2-metadata-token-ttl-seconds: 21600\r\n", "token")
                } else {
                    ("", instance_id)
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    fn sdk() -> SdkConfig {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        SdkConfig::builder().http_client(http).build()
    }

    #[tokio::test]
    async fn the_instance_id_comes_from_imds() {
        let endpoint = imds_server("i-0123456789abcdef0");
        let id = lookup_instance_id(&sdk(), Some(&endpoint)).await;
        assert_eq!(id.as_deref(), Ok("i-0123456789abcdef0"));
    }

    #[tokio::test]
    async fn an_unreachable_imds_fails_quickly() {
        // A port nobody listens on: connection refused.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let started = std::time::Instant::now();
        let id = lookup_instance_id(&sdk(), Some(&format!("http://127.0.0.1:{port}"))).await;
        assert!(id.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
