//! `[aws]`: the AWS SDK settings the file may give; everything else comes from the SDK's own chain.

use serde::Deserialize;
use toml::Spanned;

use crate::config::{ConfigError, ErrorSite};

/// The AWS SDK's settings; everything not set here comes from its standard chain.
#[derive(Debug, Clone, Default)]
pub struct AwsConfig {
    pub region: Option<String>,
}

/// The longest region name accepted, sshwatch's own sanity bound: AWS's region names (`us-east-1`,
/// `ap-southeast-2`) are far shorter, and a longer one is a mistake in the file.
const MAX_REGION_NAME: usize = 64;

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
            site.require(is_region_name(v), "aws.region", &r, || {
                format!("`{v}` is not a region name (e.g. `us-east-1`)")
            })?;
            Some(v.clone())
        }
    };
    Ok(AwsConfig { region })
}

/// Whether `name` looks like a region name: lowercase ASCII letters, digits and `-`.
fn is_region_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_REGION_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
