//! [`api_enum!`]: an enum whose variants are each spelled once, for the TOML file and the AWS API alike.

/// Defines a fieldless enum from one spelling per variant: the name serde reads from the file (and
/// lists in its error for an unknown one) and the name `as_str` gives the API calls are the same
/// string, so they cannot drift apart.
macro_rules! api_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident = $spelling:literal,
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                #[serde(rename = $spelling)]
                $variant,
            )+
        }

        impl $name {
            /// Every variant, in the order of the definition.
            #[cfg(test)]
            pub(crate) const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling the configuration file and the AWS API use.
            $vis fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $spelling,)+
                }
            }
        }
    };
}

pub(crate) use api_enum;

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use serde::de::DeserializeOwned;

    use crate::config::{
        ComparisonOperator, LogGroupClass, MetricsTransport, StartPosition, Statistic,
        TreatMissingData,
    };

    /// Each variant's spelling, written in a TOML document, reads back as that variant.
    fn reads_back<T: DeserializeOwned + Debug + PartialEq + Copy>(
        all: &[T],
        as_str: fn(T) -> &'static str,
    ) {
        #[derive(serde::Deserialize)]
        struct Doc<T> {
            value: T,
        }
        for &v in all {
            let doc: Doc<T> = toml::from_str(&format!("value = \"{}\"", as_str(v)))
                .unwrap_or_else(|e| panic!("{v:?}: {e}"));
            assert_eq!(doc.value, v);
        }
    }

    #[test]
    fn every_spelling_reads_back_as_its_variant() {
        reads_back(StartPosition::ALL, StartPosition::as_str);
        reads_back(LogGroupClass::ALL, LogGroupClass::as_str);
        reads_back(MetricsTransport::ALL, MetricsTransport::as_str);
        reads_back(Statistic::ALL, Statistic::as_str);
        reads_back(ComparisonOperator::ALL, ComparisonOperator::as_str);
        reads_back(TreatMissingData::ALL, TreatMissingData::as_str);
    }

    #[test]
    fn spellings_are_the_apis() {
        assert_eq!(
            LogGroupClass::InfrequentAccess.as_str(),
            "INFREQUENT_ACCESS"
        );
        assert_eq!(TreatMissingData::NotBreaching.as_str(), "notBreaching");
        assert_eq!(
            ComparisonOperator::GreaterThanOrEqualToThreshold.as_str(),
            "GreaterThanOrEqualToThreshold"
        );
        assert_eq!(Statistic::SampleCount.as_str(), "SampleCount");
        assert_eq!(MetricsTransport::PutMetricData.as_str(), "put_metric_data");
        assert_eq!(StartPosition::Beginning.as_str(), "beginning");
    }
}
