//! `[aws]`: the AWS SDK settings the file may give; everything else comes from the SDK's own chain.

use serde::Deserialize;
use toml::Spanned;

use crate::config::{ConfigError, ErrorSite};

/// The AWS SDK's settings; everything not set here comes from its standard chain.
#[derive(Debug, Clone, Default)]
pub struct AwsConfig {
    pub region: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAws {
    region: Option<Spanned<String>>,
}

pub(crate) fn check_aws(raw: RawAws, site: &ErrorSite<'_>) -> Result<AwsConfig, ConfigError> {
    let region = match raw.region {
        None => None,
        Some(r) => {
            let v = r.get_ref();
            let ok = !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(site.error(
                    "aws.region",
                    Some(r.span()),
                    format!("`{v}` is not a region name (e.g. `us-east-1`)"),
                ));
            }
            Some(v.clone())
        }
    };
    Ok(AwsConfig { region })
}
