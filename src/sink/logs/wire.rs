//! The PutLogEvents request body on the wire: written by sshwatch from a batch's one buffer
//! ([`crate::sink::body`]) and put in place of the SDK's own before the request is signed, so the SDK still
//! resolves credentials and the endpoint, signs, sends and parses the answer.
//!
//! Before a sink's first call, [`choose_writer`] has the SDK serialize a sample call holding every
//! character the two writers could treat differently (the call is stopped right after serialization: no
//! credentials, no network) and compares the bytes; if they differ (a later SDK may change the protocol,
//! as CloudWatch's did), every call goes through the SDK's serializer. The reason is CPU: the SDK's
//! byte-at-a-time JSON escaping and one allocation per event cost about a third of the daemon's CPU per
//! line.

use std::sync::Arc;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::interceptors::{
    BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_cloudwatchlogs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use tracing::warn;

use crate::sink::batch::EventBatch;
use crate::sink::body;

/// Who writes the PutLogEvents body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyWriter {
    /// Not decided yet: decided before the first call.
    Unchecked,
    /// [`body::put_log_events`], written once per batch from its one buffer.
    Ours,
    /// The SDK's serializer, from one [`InputLogEvent`] per event and attempt.
    Sdk,
}

/// [`BodyWriter::Ours`] when the SDK writes the very bytes [`body::put_log_events`] writes for a sample
/// call, else [`BodyWriter::Sdk`] (a later SDK may change its protocol, as CloudWatch's did).
pub(crate) async fn choose_writer(client: &Client) -> BodyWriter {
    match sdk_agrees(client).await {
        Ok(()) => BodyWriter::Ours,
        Err(why) => {
            warn!(
                reason = %why,
                "the AWS SDK no longer writes PutLogEvents as sshwatch does ({why}); every call goes through the SDK's own serializer from now on (more CPU per line, nothing else changes)"
            );
            BodyWriter::Sdk
        }
    }
}

/// The sample: every character class the writers escape differently, plus non-ASCII text.
fn sample_batch() -> EventBatch {
    let mut sample = EventBatch::new();
    sample.push(
        1_700_000_000_000,
        "Failed password for root from 192.0.2.1 port 22 ssh2",
    );
    sample.push(
        1_700_000_000_001,
        "quote \" backslash \\ controls \u{0}\u{8}\t\n\u{c}\r\u{1b}\u{1f} del \u{7f}",
    );
    sample.push(-1, "caf\u{e9} \u{1f511} \u{2028} \u{fffd} 0123456789abcdef");
    sample
}

/// Has the SDK serialize a PutLogEvents of [`sample_batch`] and compares its request with ours. The call
/// is stopped right after serialization: no credentials are asked for, nothing goes on the network.
async fn sdk_agrees(client: &Client) -> Result<(), String> {
    let sample = sample_batch();
    let (group, stream) = ("sample-group \"/\\", "sample-stream \u{e9}");
    let seen = Arc::new(std::sync::Mutex::new(None));
    let _stopped = client
        .put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .set_log_events(Some(to_input(&sample)?))
        .customize()
        .interceptor(StopAfterSerialization(Arc::clone(&seen)))
        .send()
        .await;
    let seen = seen
        .lock()
        .ok()
        .and_then(|mut s| s.take())
        .ok_or("the SDK did not serialize the sample call")?;
    let Serialized {
        content_type,
        body: sdk_body,
        ..
    } = seen;
    if content_type.as_deref() != Some(JSON_CONTENT_TYPE) {
        return Err(format!(
            "the SDK sends content type {content_type:?}, not {JSON_CONTENT_TYPE}"
        ));
    }
    let ours = body::put_log_events(group, stream, &sample);
    if sdk_body != ours {
        return Err(format!(
            "the SDK wrote {}, sshwatch {}",
            String::from_utf8_lossy(&sdk_body),
            String::from_utf8_lossy(&ours)
        ));
    }
    Ok(())
}

/// The content type of the awsJson 1.1 protocol that [`body::put_log_events`] writes.
const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// What the SDK made of a request: its content type and body.
#[derive(Debug)]
struct Serialized {
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Serialized {
    fn of(context: &BeforeTransmitInterceptorContextRef<'_>) -> Serialized {
        let request = context.request();
        Serialized {
            content_type: request.headers().get("content-type").map(str::to_owned),
            body: request.body().bytes().unwrap_or_default().to_vec(),
        }
    }
}

/// Where [`StopAfterSerialization`] keeps what it saw.
type Seen = Arc<std::sync::Mutex<Option<Serialized>>>;

/// Records the serialized request, then fails the call.
#[derive(Debug)]
struct StopAfterSerialization(Seen);

impl Intercept for StopAfterSerialization {
    fn name(&self) -> &'static str {
        "StopAfterSerialization"
    }

    fn read_after_serialization(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(Serialized::of(context));
        }
        Err("sample serialized; not sent".into())
    }
}

/// Puts its body in place of the SDK's (which holds no events) before the request is signed, so the
/// signature covers it.
#[derive(Debug)]
pub(crate) struct ReplaceBody(pub(crate) Bytes);

impl Intercept for ReplaceBody {
    fn name(&self) -> &'static str {
        "ReplaceBody"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request_mut();
        request
            .headers_mut()
            .insert("content-length", self.0.len().to_string());
        *request.body_mut() = SdkBody::from(self.0.clone());
        Ok(())
    }
}

/// The SDK's events, for [`BodyWriter::Sdk`] and the sample; an event the SDK will not build is a reason
/// to refuse the batch (cannot happen with both fields set).
pub(crate) fn to_input(batch: &EventBatch) -> Result<Vec<InputLogEvent>, String> {
    batch
        .iter()
        .map(|(timestamp_ms, message)| {
            InputLogEvent::builder()
                .timestamp(timestamp_ms)
                .message(message)
                .build()
                .map_err(|e| format!("cannot build a log event: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use aws_config::SdkConfig;

    use super::*;

    /// Records the request as it is about to be signed, then stops the call.
    #[derive(Debug)]
    struct StopBeforeSigning(Arc<std::sync::Mutex<Option<Signable>>>);

    /// The request as signing would see it, and its `content-length`.
    type Signable = (Serialized, Option<String>);

    impl Intercept for StopBeforeSigning {
        fn name(&self) -> &'static str {
            "StopBeforeSigning"
        }

        fn read_before_signing(
            &self,
            context: &BeforeTransmitInterceptorContextRef<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let length = context.request().headers().get("content-length");
            *self.0.lock().expect("not poisoned") =
                Some((Serialized::of(context), length.map(str::to_owned)));
            Err("stopped before signing".into())
        }
    }

    #[tokio::test]
    async fn the_sdk_writes_the_body_sshwatch_writes() {
        // No region, HTTP client or credentials: the check needs nothing past serialization.
        let client = Client::new(&SdkConfig::builder().build());
        assert_eq!(sdk_agrees(&client).await, Ok(()));
        assert_eq!(choose_writer(&client).await, BodyWriter::Ours);
    }

    #[tokio::test]
    async fn the_body_is_in_place_when_the_request_is_signed() {
        let conf = aws_sdk_cloudwatchlogs::config::Builder::new()
            .region(aws_sdk_cloudwatchlogs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_cloudwatchlogs::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            .build();
        let client = Client::from_conf(conf);
        let body = body::put_log_events("g", "s", &sample_batch());
        let seen = Arc::new(std::sync::Mutex::new(None));
        let result = client
            .put_log_events()
            .log_group_name("g")
            .log_stream_name("s")
            .customize()
            .interceptor(ReplaceBody(Bytes::from(body.clone())))
            .interceptor(StopBeforeSigning(Arc::clone(&seen)))
            .send()
            .await;
        assert!(result.is_err());
        let (seen, length) = seen.lock().expect("not poisoned").take().expect("seen");
        assert_eq!(length, Some(body.len().to_string()));
        assert_eq!(seen.body, body);
        assert_eq!(seen.content_type.as_deref(), Some(JSON_CONTENT_TYPE));
    }

    #[test]
    fn the_sample_holds_every_byte_that_is_escaped() {
        let sample = sample_batch();
        let text: String = sample.iter().map(|(_, m)| m).collect();
        for b in [b'"', b'\\', 0, 8, b'\t', b'\n', 0x0c, b'\r', 0x1b, 0x1f] {
            assert!(text.as_bytes().contains(&b), "{b:#x}");
        }
        assert!(!text.is_ascii());
    }

    #[test]
    fn the_sdk_events_are_the_batch() {
        let sample = sample_batch();
        let input = to_input(&sample).expect("events");
        let back: Vec<(i64, &str)> = input.iter().map(|e| (e.timestamp(), e.message())).collect();
        assert_eq!(back, sample.iter().collect::<Vec<_>>());
    }
}
