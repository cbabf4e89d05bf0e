//! The one place that builds the AWS SDK configuration: the SDK's standard chain plus an HTTP client.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls;

use crate::config::AwsConfig;

/// Loads the SDK configuration: region from `[aws] region` when set, everything
/// else (credentials, endpoint via `AWS_ENDPOINT_URL`, retries via
/// `AWS_MAX_ATTEMPTS`/`AWS_RETRY_MODE`, IMDS) from the SDK's standard chain.
pub(crate) async fn sdk_config(aws: &AwsConfig) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client);
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    loader.load().await
}
